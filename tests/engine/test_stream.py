"""Streamed data (`data.stream: true`): each rank reads its share of a batch; in real
processes a run killed with SIGKILL and resumed ends exactly as an uninterrupted one, and two
processes under torch.distributed train as they do on the same data in memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from test_resume import info, nncli, rows_without_time, start, wait_for_rows, weights

from nncli.engine.batches import DiskRows

# long enough epochs (300 batches) that a kill lands between epochs, not after the run
STREAMED = """\
name: streamed
seed: 3
data: {{source: npy, x: x.npy, y: y.npy, standardize: true, stream: true, workers: {workers},
       shuffle: {shuffle}, split: {{val: 0.2, test: 0.2}}}}
model:
  layers: [dense: 16, relu, dropout: 0.1, dense: 1]
loss: bce_with_logits
optimizer: {{name: adam, lr: 0.01}}
scheduler: {{name: cosine, warmup_epochs: 1}}
train: {{epochs: 6, batch_size: 8, device: cpu}}
metrics: [accuracy]
"""


def streamed(folder: Path, workers: int = 0, shuffle: str = "chunks", features: int = 4) -> Path:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, features)).astype(np.float32) * 5 + 3
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", (x[:, 0] * x[:, 1] > 9).astype(np.int64))
    spec = folder / "streamed.yaml"
    spec.write_text(STREAMED.format(workers=workers, shuffle=shuffle), encoding="utf-8")
    return spec


def image_folder(folder: Path, workers: int, n: int = 4000) -> Path:
    """`n` PNGs of 8x8 in two class folders, streamed (decoded batch by batch)."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for i in range(n):
        label = i % 2
        pixels = rng.integers(0, 60, size=(8, 8), dtype=np.uint8)
        pixels[:, 4 * label : 4 * label + 4] += 150
        (folder / "f" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(folder / "f" / str(label) / f"{i:04d}.png")
    spec = folder / "images.yaml"
    spec.write_text(
        STREAMED.replace("[dense: 16", "[flatten, dense: 16")
        .replace("dense: 1]", "dense: 2]")
        .replace("bce_with_logits", "cross_entropy")
        .replace("source: npy, x: x.npy, y: y.npy,", "source: images, path: f, size: [8, 8],")
        .replace("shuffle: {shuffle}, ", "channels: 1, ")
        .format(workers=workers),
        encoding="utf-8",
    )
    return spec


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workers", "shuffle"), [(0, "chunks"), (1, "chunks"), (0, "rows"), (1, "images")]
)
def test_a_streamed_run_killed_and_resumed_equals_an_uninterrupted_one(
    tmp_path: Path, workers: int, shuffle: str
) -> None:
    if shuffle == "images":  # a folder of images decoded as read, by a worker
        spec = image_folder(tmp_path, workers)
    else:  # rows of 2 kB: the 2,400 train rows are 19 chunks of 256 kB (5 windows)
        spec = streamed(tmp_path, workers, shuffle, features=512)
    whole = nncli("train", str(spec), "--runs-dir", str(tmp_path / "whole"), "-q")
    assert whole.returncode == 0, whole.stderr
    reference = Path(whole.stdout.strip())

    proc = start("train", str(spec), "--runs-dir", str(tmp_path / "killed"), "-q")
    folder = wait_for_rows(tmp_path / "killed", 2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()  # SIGKILL
    proc.communicate(timeout=60)
    assert info(folder)["status"] == "running"  # nobody could record the kill
    assert len(rows_without_time(folder)) < 6

    resumed = nncli("resume", str(folder), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert rows_without_time(folder) == rows_without_time(reference)
    assert [int(r["epoch"]) for r in rows_without_time(folder)] == list(range(1, 7))
    mine, theirs = weights(folder), weights(reference)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert info(folder)["status"] == "completed"


def test_a_streamed_epoch_reads_chunks_of_adjacent_rows_in_a_seeded_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nncli.config.spec import load_experiment
    from nncli.data.pipeline import prepare
    from nncli.engine import batches

    spec = load_experiment(streamed(tmp_path)).spec
    dataset, indices = prepare(spec.data, spec.seed, "binary")
    assert dataset.preprocessing is not None
    disk = DiskRows.of(dataset.x, indices["train"], dataset.preprocessing, torch.device("cpu"), 0)
    monkeypatch.setattr(batches, "CHUNK_BYTES", 16 * 100)  # 100 rows of 4 float32 a chunk
    assert disk.chunk_rows == 100 and len(disk) == 2400
    perm = disk.permutation(torch.Generator().manual_seed(5))
    again = disk.permutation(torch.Generator().manual_seed(5))
    assert torch.equal(perm, again)  # drawn from the generator alone: a resume draws it again
    assert sorted(perm.tolist()) == list(range(2400))
    file_rows = indices["train"][perm.numpy()]
    rank = np.argsort(np.argsort(indices["train"]))  # each position's place in file order
    chunk = rank[perm.numpy()] // 100
    # each window of 4 x 100 positions holds four whole chunks of rows adjacent in the file,
    # rows shuffled among them; the windows come in a random order
    for w in range(6):
        inside = chunk[w * 400 : (w + 1) * 400]
        assert sorted(np.bincount(inside, minlength=24)[np.unique(inside)]) == [100] * 4
        assert not np.all(np.diff(inside) >= 0)  # shuffled within the window
    assert [int(c) for c in chunk[::400]] != sorted(int(c) for c in chunk[::400])
    assert file_rows.tolist() != sorted(file_rows.tolist())
    # shuffle: rows draws what in-memory fit draws
    rows = DiskRows.of(
        dataset.x, indices["train"], dataset.preprocessing, torch.device("cpu"), 0, "rows"
    )
    assert torch.equal(
        rows.permutation(torch.Generator().manual_seed(5)),
        torch.randperm(2400, generator=torch.Generator().manual_seed(5)),
    )


def test_each_rank_reads_its_own_share_of_every_batch(tmp_path: Path) -> None:
    from nncli.config.spec import load_experiment
    from nncli.data.pipeline import prepare

    spec = load_experiment(streamed(tmp_path)).spec
    dataset, indices = prepare(spec.data, spec.seed, "binary")
    assert dataset.preprocessing is not None
    disk = DiskRows.of(dataset.x, indices["train"], dataset.preprocessing, torch.device("cpu"), 0)
    perm = torch.randperm(len(disk), generator=torch.Generator().manual_seed(0))
    ranks = [list(disk.epoch(perm, 10, 3, rank, 2)) for rank in (0, 1)]
    # with chunks, each rank draws the same order from the same seed: disjoint halves
    chunked = [disk.permutation(torch.Generator().manual_seed(0)) for _ in (0, 1)]
    shares = [[i for i, _ in disk.epoch(chunked[r], 10, 3, r, 2)] for r in (0, 1)]
    for i in range(3):
        both = sorted(shares[0][i].tolist() + shares[1][i].tolist())
        assert both == sorted(chunked[0][i * 10 : (i + 1) * 10].tolist())
    for i in range(3):
        (a, xa), (b, xb) = ranks[0][i], ranks[1][i]
        assert a.tolist() == perm[i * 10 : (i + 1) * 10 : 2].tolist()
        assert b.tolist() == perm[i * 10 + 1 : (i + 1) * 10 : 2].tolist()
        # the rows of the file those positions name, standardised as in memory
        rows = indices["train"][a.numpy()]
        assert torch.equal(xa, torch.from_numpy(dataset.preprocessing.transform(dataset.x[rows])))
    assert len(xb) == 5


@pytest.mark.slow
def test_two_processes_stream_the_batches_two_processes_take_in_memory(tmp_path: Path) -> None:
    spec = streamed(tmp_path, shuffle="rows")  # the order in memory
    spec.write_text(
        spec.read_text()
        .replace("epochs: 6", "epochs: 2")
        .replace("batch_size: 8", "batch_size: 32")
    )
    runs = {}
    for stream in ("true", "false"):
        text = spec.read_text().replace("stream: true", f"stream: {stream}")
        one = tmp_path / f"{stream}.yaml"
        one.write_text(text)
        out = nncli(
            "train", str(one), "--runs-dir", str(tmp_path / stream), "--nproc-per-node", "2"
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "2 processes: global batch 32 = 2 x 16 per process" in out.stdout
        runs[stream] = Path(out.stdout.strip().splitlines()[-1])
    assert (
        "data: streamed from disk (4,000 rows, 64.0 kB; workers 0)"
        in (runs["true"] / "log.txt").read_text()
    )
    assert rows_without_time(runs["true"]) == rows_without_time(runs["false"])
    mine, theirs = weights(runs["true"]), weights(runs["false"])
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_evaluation_reads_a_split_in_file_order(tmp_path: Path) -> None:
    from nncli.config.spec import load_experiment
    from nncli.data.pipeline import prepare

    spec = load_experiment(streamed(tmp_path)).spec
    dataset, indices = prepare(spec.data, spec.seed, "binary")
    assert dataset.preprocessing is not None
    train = indices["train"]
    assert train.tolist() != sorted(train.tolist())  # the train split's own order is random
    disk = DiskRows.of(dataset.x, train, dataset.preprocessing, torch.device("cpu"), 0)
    read = list(disk.chunks(1000))
    assert [len(idx) for idx, _ in read] == [1000, 1000, 400]
    positions = torch.cat([idx for idx, _ in read]).numpy()
    assert train[positions].tolist() == sorted(train.tolist())  # each row once, file order
    x = torch.cat([xb for _, xb in read])
    assert torch.equal(
        x, torch.from_numpy(dataset.preprocessing.transform(dataset.x[train[positions]]))
    )


@pytest.mark.parametrize("source", ["images", "npy"])
def test_workers_send_a_batch_of_bytes_as_they_are_and_the_inputs_stay_the_same(
    tmp_path: Path, source: str
) -> None:
    """A worker's tensor crosses to the main process through shared memory at about a
    millisecond a tensor: image pixels and a uint8 .npy's rows cross as the bytes they are,
    pickled, and the main process makes them the float32 inputs (standardized here) that
    reading them there gives."""
    from nncli.config.spec import load_experiment
    from nncli.data.pipeline import prepare
    from nncli.engine.batches import _Reader

    if source == "images":
        spec_file = image_folder(tmp_path, 2, n=60)  # standardized, as all of STREAMED
    else:
        spec_file = streamed(tmp_path, 2, features=64)
        rng = np.random.default_rng(4)
        np.save(tmp_path / "x.npy", rng.integers(0, 256, size=(4000, 64), dtype=np.uint8))
    spec = load_experiment(spec_file).spec
    dataset, indices = prepare(
        spec.data, spec.seed, "classification" if source == "images" else "binary"
    )
    assert dataset.preprocessing is not None and dataset.preprocessing.standardize
    cpu = torch.device("cpu")
    disk = DiskRows.of(dataset.x, indices["train"], dataset.preprocessing, cpu, 2)
    idx, values, problem = _Reader(disk)[np.array([3, 0, 5])]
    assert isinstance(idx, np.ndarray) and idx.tolist() == [3, 0, 5]
    assert isinstance(values, np.ndarray) and values.dtype == np.uint8 and values.shape == (3, 64)
    assert problem == ""
    positions = [np.arange(i, min(i + 8, len(disk))) for i in range(0, len(disk), 8)]
    got = list(disk.batches(positions))
    assert [idx.tolist() for idx, _ in got] == [p.tolist() for p in positions]
    x = torch.cat([xb for _, xb in got])
    assert x.dtype == torch.float32 and torch.equal(x, disk.read(np.arange(len(disk))))
    # where no worker sends them (no workers), the reader prepares them as before
    _, prepared, _ = _Reader(
        DiskRows.of(dataset.x, indices["train"], dataset.preprocessing, cpu, 0)
    )[np.array([3])]
    assert isinstance(prepared, torch.Tensor) and torch.equal(prepared, x[3:4])


def test_a_ctrl_c_while_the_workers_fork_stops_the_run(tmp_path: Path) -> None:
    """Ctrl-C lands, as it may, while the DataLoader forks its workers: raised inside an
    at-fork hook it was printed as 'Exception ignored' and lost, and the run went on."""
    import os
    import signal

    from nncli.config.spec import load_experiment
    from nncli.data.pipeline import prepare
    from nncli.engine.signals import training_signals
    from nncli.errors import RunInterrupted

    spec = load_experiment(streamed(tmp_path)).spec
    dataset, indices = prepare(spec.data, spec.seed, "binary")
    assert dataset.preprocessing is not None
    disk = DiskRows.of(dataset.x, indices["train"], dataset.preprocessing, torch.device("cpu"), 1)
    armed = [False]

    def ctrl_c_in_the_fork() -> None:
        if armed[0]:
            armed[0] = False
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the hook returns

    os.register_at_fork(after_in_parent=ctrl_c_in_the_fork)  # (cannot be removed: disarmed)
    try:
        armed[0] = True
        with training_signals(), pytest.raises(RunInterrupted):
            for _ in disk.batches([np.arange(8)] * 50):
                pass
    finally:
        armed[0] = False


FORKED = """\
import multiprocessing, os, sys
from pathlib import Path
multiprocessing.set_start_method("forkserver", force=True)  # as in a sweep's warm trial
import numpy as np, torch
from nncli.config.spec import load_experiment
from nncli.data import imagefiles
from nncli.data.pipeline import prepare
from nncli.engine.batches import DiskRows
noted = Path(sys.argv[2])
noted.write_text(f"main {os.getpid()}\\n")
def noting(work):  # a patch here reaches a worker that is forked, not one a server starts
    def done(path, *rest):
        with noted.open("a") as f:
            f.write(f"{work.__name__} {os.getpid()}\\n")
        return work(path, *rest)
    return done
imagefiles.peek, imagefiles.decode = noting(imagefiles.peek), noting(imagefiles.decode)
imagefiles.PARALLEL_FILES = 4
spec = load_experiment(Path(sys.argv[1])).spec
dataset, indices = prepare(spec.data, spec.seed, "classification")  # headers checked
disk = DiskRows.of(dataset.x, indices["train"], dataset.preprocessing, torch.device("cpu"), 2)
assert len(list(disk.batches([np.arange(8), np.arange(8, 16)]))) == 2
"""


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux")
def test_workers_are_forked_where_the_default_is_a_fork_server(tmp_path: Path) -> None:
    """A sweep's warm trial is started by a fork server, which multiprocessing makes its
    default: data workers started from it took 2.6-4 s each, twice an epoch."""
    spec_file = image_folder(tmp_path, 2, n=40)
    noted = tmp_path / "noted"
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(spec_file), str(noted)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (_, main), *seen = [line.split() for line in noted.read_text().splitlines()]
    # (standardize: true decodes the train split here too, for its statistics)
    assert {work for work, pid in seen if pid != main} == {"peek", "decode"}, seen


def test_with_no_workers_the_next_batch_is_read_on_a_thread_while_this_one_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from nncli.config.spec import load_experiment
    from nncli.data import npy as npymod
    from nncli.data.pipeline import prepare

    spec = load_experiment(streamed(tmp_path)).spec
    dataset, indices = prepare(spec.data, spec.seed, "binary")
    assert dataset.preprocessing is not None
    disk = DiskRows.of(dataset.x, indices["train"], dataset.preprocessing, torch.device("cpu"), 0)
    readers: list[str] = []
    read = npymod.NpyRows.read
    monkeypatch.setattr(
        npymod.NpyRows,
        "read",
        lambda self, rows: readers.append(threading.current_thread().name) or read(self, rows),
    )
    perm = disk.permutation(torch.Generator().manual_seed(0))
    got = list(disk.epoch(perm, 100, 24, 0, 1))
    assert readers == ["nncli-read-ahead"] * 24
    assert [idx.tolist() for idx, _ in got] == [
        perm[i * 100 : (i + 1) * 100].tolist() for i in range(24)
    ]


def test_read_ahead_raises_where_the_item_was_wanted_and_stops_with_its_consumer() -> None:
    import threading

    from nncli.engine.batches import ahead

    def items() -> Iterator[int]:
        yield from range(3)
        raise OSError("the disk went away")

    got = []
    with pytest.raises(OSError, match="the disk went away"):
        for item in ahead(items()):
            got.append(item)
    assert got == [0, 1, 2]
    endless = ahead(iter(range(10**9)))
    assert [next(endless), next(endless)] == [0, 1]
    endless.close()  # a step that failed: the reading thread ends with it
    assert [t.name for t in threading.enumerate() if t.name == "nncli-read-ahead"] == []


@pytest.mark.parametrize(
    ("threads", "workers", "stream", "expected"),
    [
        (2, 0, "true", 1),
        (4, 0, "true", 3),
        (4, 2, "true", 2),
        (2, 3, "true", 1),
        (4, 0, "false", None),
    ],
)
def test_a_streamed_run_leaves_a_core_to_each_reader(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    threads: int,
    workers: int,
    stream: str,
    expected: int | None,
) -> None:
    # a reader competing with torch's threads for the cores stalls each of their joins
    from nncli.config.spec import load_experiment
    from nncli.engine.devices import threads_for
    from nncli.engine.prepare import prepare

    spec_file = streamed(tmp_path, workers, features=256)
    text = (
        spec_file.read_text()
        .replace("dense: 16", "dense: 1024")
        .replace("stream: true", f"stream: {stream}")
    )
    spec_file.write_text(text)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        p = prepare(load_experiment(spec_file).spec)
        assert isinstance(p.splits["train"][0], DiskRows) == (stream == "true")
        assert threads_for(p) == expected
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_to_the_group_stops_a_run_whose_workers_read_images_as_interrupted(
    tmp_path: Path, sig: int, code: int
) -> None:
    # Ctrl-C reaches the terminal's whole process group: the DataLoader's workers, forked
    # with training's handler, each raised RunInterrupted and printed its traceback, and
    # report.html was not written (a worker "exited unexpectedly"); SIGTERM to the group
    # killed the workers, and torch's error marked the run failed (exit 1)
    spec = image_folder(tmp_path, workers=2)
    text = spec.read_text().replace("epochs: 6", "epochs: 50")
    spec.write_text(text.replace("batch_size: 8", "batch_size: 2"))  # epochs of about 2 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "nncli", "train", str(spec), "--runs-dir", str(tmp_path / "r")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's job is
    )
    folder = wait_for_rows(tmp_path / "r", 2)
    # in the third epoch, its workers reading (not as they are forked: a signal that lands
    # in Python's at-fork hooks is lost, an older race)
    time.sleep(0.5)
    os.killpg(proc.pid, sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "warning" not in stderr, stderr
    assert stderr.startswith("interrupted: the run is marked interrupted"), stderr
    assert info(folder)["status"] == "interrupted"
    assert (folder / "report.html").is_file()
