"""`data.workers` decode a folder held in memory and check a streamed folder's headers in
parallel (`imagefiles.in_parts`): the same pixels and the same bad files, in order, as one
process gives; a reader that stops early cancels the rest, a worker leaves Ctrl-C to the
main process, and a worker that dies is a message, not a traceback."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from datafiles import params, spec_text
from test_images import write_folder
from typer.testing import CliRunner

from nncli import data as datamod
from nncli.cli.app import app
from nncli.data import imagefiles
from nncli.errors import NncliError

FORK = multiprocessing.get_start_method() == "fork"  # a patch here reaches the workers


def folder_with_bad_files(tmp_path: Path) -> Path:
    """40 PNGs in two class folders, one file that is no image, one truncated past its
    header (it opens, but its pixels cannot be decoded)."""
    root = write_folder(tmp_path / "f", n=40)
    (root / "left" / "000b.png").write_bytes(b"not an image at all")
    whole = (root / "right" / "001.png").read_bytes()
    (root / "right" / "001b.png").write_bytes(whole[: len(whole) // 2])
    return root


def test_workers_decode_and_check_a_folder_as_one_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = folder_with_bad_files(tmp_path)
    files = imagefiles.image_files(root, [".png"])
    one = imagefiles.decode_all(files, (6, 6), "none", 1, "x", 0)
    peeked = imagefiles.peek_all(files, 0)
    monkeypatch.setattr(imagefiles, "PARALLEL_FILES", 4)
    monkeypatch.setattr(imagefiles, "DECODE_PART", 3)  # 14 parts, the last one short
    monkeypatch.setattr(imagefiles, "CHECK_PART", 5)
    pids = tmp_path / "pids"
    noting_pids(monkeypatch, pids)
    two = imagefiles.decode_all(files, (6, 6), "none", 1, "x", 2)
    assert np.array_equal(one[0], two[0]) and one[0].any()
    assert [(p.name, why) for p, why in two[1]] == [(p.name, why) for p, why in one[1]]
    assert [p.name for p, _ in two[1]] == ["000b.png", "001b.png"]
    assert imagefiles.peek_all(files, 2) == peeked
    assert [p.name for p, _ in peeked] == ["000b.png"]  # the truncated one's header reads
    if FORK:
        decoded_by = set(pids.read_text().split())
        assert len(decoded_by) == 2 and str(os.getpid()) not in decoded_by


def test_a_folder_loads_the_same_with_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = folder_with_bad_files(tmp_path)
    section = f"source: images\npath: {root}\nsize: [6, 6]\nchannels: 1\nskip_bad: true"
    one = datamod.load(params(section), seed=0)
    monkeypatch.setattr(imagefiles, "PARALLEL_FILES", 4)
    two = datamod.load(params(section + "\nworkers: 2"), seed=0)
    assert np.array_equal(one.x, two.x) and np.array_equal(one.y, two.y)
    assert one.warnings == two.warnings and "2 of 42 images cannot be read" in two.warnings[0]
    streamed = datamod.load(params(section + "\nworkers: 2\nstream: true"), seed=0)
    assert "1 of 42 images cannot be read: " in streamed.warnings[0]


def noting_pids(monkeypatch: pytest.MonkeyPatch, pids: Path) -> None:
    """Each decode writes the pid of its process to `pids` (where workers are forked)."""
    decode = imagefiles.decode

    def noted(path: str | Path, *rest: object) -> object:
        with pids.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return decode(path, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(imagefiles, "decode", noted)


def test_predict_decodes_a_folder_with_the_runs_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_folder(tmp_path / "f", n=24)
    text = spec_text(f"source: images\npath: {root}\nsize: [6, 6]\nchannels: 1\nworkers: 2", out=2)
    (tmp_path / "e.yaml").write_text(text.replace("- dense: 4", "- flatten\n    - dense: 4"))
    trained = CliRunner().invoke(
        app, ["train", str(tmp_path / "e.yaml"), "--runs-dir", str(tmp_path / "runs"), "-q"]
    )
    assert trained.exit_code == 0, trained.output
    run = trained.stdout.strip()
    new = write_folder(tmp_path / "new", n=12)
    alone = CliRunner().invoke(app, ["predict", run, str(new)])
    monkeypatch.setattr(imagefiles, "PARALLEL_FILES", 4)
    monkeypatch.setattr(imagefiles, "DECODE_PART", 3)
    pids = tmp_path / "pids"
    noting_pids(monkeypatch, pids)
    together = CliRunner().invoke(app, ["predict", run, str(new)])
    assert together.exit_code == 0, together.output
    assert together.stdout == alone.stdout and len(together.stdout.splitlines()) == 13
    if FORK:
        decoded_by = set(pids.read_text().split())
        assert len(decoded_by) == 2 and str(os.getpid()) not in decoded_by


def _slow(files: list[str]) -> list[str]:
    time.sleep(0.2)
    return files


def _interrupted(files: list[str]) -> list[str]:
    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C reaches every process of the terminal's
    time.sleep(0.05)
    return files


def _dies(files: list[str]) -> list[str]:
    os._exit(3)


def test_a_reader_that_stops_early_cancels_the_parts_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imagefiles, "PARALLEL_FILES", 1)
    began = time.monotonic()
    parts = imagefiles.in_parts([str(i) for i in range(40)], _slow, 1, 2, "x")
    assert next(parts) == (0, ["0"])
    parts.close()  # e.g. Ctrl-C in the main process: 40 parts over 2 workers take 4 s
    assert time.monotonic() - began < 2.0


def _photos(files: list[str]) -> list[str]:
    time.sleep(0.1 * len(files))  # a large photo takes 0.1-0.3 s
    return files


def test_the_first_parts_are_short_so_that_slow_files_are_counted_a_second_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a bar starts at the first count after a second: with 32 photos in every part, the
    # first count came after 3 s at best, and every count after that was 32 files
    monkeypatch.setattr(imagefiles, "PARALLEL_FILES", 1)
    began = time.monotonic()
    parts = imagefiles.in_parts([str(i) for i in range(64)], _photos, 32, 2, "x")
    assert next(parts) == (0, ["0"])
    assert time.monotonic() - began < 2.0  # 0.1-0.3 s here; forking on a loaded machine
    parts.close()
    files = [str(i) for i in range(100)]
    done = list(imagefiles.in_parts(files, _same, 32, 2, "x"))
    assert [f for _, part in done for f in part] == files  # in order, each file once
    assert all(part[0] == str(lo) for lo, part in done)
    assert max(len(part) for _, part in done) == 32


def _same(files: list[str]) -> list[str]:
    return files


def _slow_from_the_third_part(files: list[str]) -> list[str]:
    if int(files[0]) >= 3:
        time.sleep(5)  # 32 large photos (DECODE_PART) take 3 to 10 s
    return files


def test_a_reader_that_stops_waits_for_no_part_under_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C in the main process (or a sweep stopping a trial) waited for the parts under
    # way in the workers, seconds on end without a word, before it could say it stopped
    monkeypatch.setattr(imagefiles, "PARALLEL_FILES", 1)
    parts = imagefiles.in_parts([str(i) for i in range(40)], _slow_from_the_third_part, 8, 2, "x")
    assert [next(parts)[0], next(parts)[0]] == [0, 1]  # the parts from 3 and 7 under way
    began = time.monotonic()
    parts.close()
    assert time.monotonic() - began < 2.0  # not the 5 s of the parts under way


def test_workers_leave_ctrl_c_to_the_main_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imagefiles, "PARALLEL_FILES", 1)
    try:
        done = list(imagefiles.in_parts(["a", "b", "c"], _interrupted, 1, 2, "x"))
    except KeyboardInterrupt:
        pytest.fail("a worker's Ctrl-C came back to the main process as its own")
    assert done == [(0, ["a"]), (1, ["b"]), (2, ["c"])]


def test_a_worker_that_dies_is_named_with_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imagefiles, "PARALLEL_FILES", 1)
    with pytest.raises(NncliError) as caught:
        list(imagefiles.in_parts(["a", "b"], _dies, 1, 2, "decoding images"))
    assert str(caught.value) == (
        "a worker decoding images ended before its files were done (killed, or out of "
        "memory?); set data.workers: 0 to do it in this process"
    )
    assert caught.value.key == "data.workers"  # the CLI names its file, line and column


DIES_UNDER_TRAIN = """\
import os, signal, time
from nncli.data import imagefiles
from nncli.engine.signals import interrupt
from nncli.errors import NncliError

def task(files):
    if files == ["dies"]:
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)  # e.g. the kernel's out-of-memory killer
    time.sleep(1)
    return bytes(2**20)  # more than a pipe holds

imagefiles.PARALLEL_FILES = 1
signal.signal(signal.SIGTERM, interrupt)  # as `nncli train` has it while it loads data
try:
    list(imagefiles.in_parts(["dies", "a", "b", "c", "d"], task, 1, 2, "decoding images"))
except NncliError as exc:
    print(exc)
"""


@pytest.mark.skipif(not FORK, reason="the workers inherit the handler where they are forked")
def test_a_worker_that_dies_in_nncli_train_ends_the_others_and_is_named(
    tmp_path: Path,
) -> None:
    # the pool ends the other workers with SIGTERM, whose handler (training's, inherited
    # through fork) raised in them and let them wait for work forever: the run hung
    script = tmp_path / "dies.py"
    script.write_text(DIES_UNDER_TRAIN)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own: ended whole where it hangs
    )
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the main process waited forever for a worker that ignored SIGTERM")
    assert (proc.returncode, err) == (0, "")
    assert out == (
        "a worker decoding images ended before its files were done (killed, or out of "
        "memory?); set data.workers: 0 to do it in this process\n"
    )
