"""What compare and `nncli runs` read of a run folder: tampered run.json and config.yaml
are left out with a warning, never crashed on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import info
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.runs import compare


def test_tampered_run_json_and_config_are_left_out_not_crashed_on(
    runner: CliRunner, checkpoint: Path, tmp_path: Path
) -> None:
    good = checkpoint.parent.parent
    root = good.parent
    for name, change in {
        "bad_best": lambda d: {**d, "best": 3, "monitor": ["x"]},
        "bad_types": lambda d: {**d, "started_at": {"a": 1}, "epochs_done": "many"},
    }.items():
        copy = root / name
        shutil.copytree(good, copy)
        (copy / "run.json").write_text(json.dumps(change(info(good))))
    bomb = root / "bomb"
    shutil.copytree(good, bomb)
    (bomb / "config.yaml").write_text(
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        + "".join(
            f"{n}: &{n} [" + ", ".join([f"*{p}"] * 10) + "]\n"
            for p, n in zip("abcdefg", "bcdefgh", strict=True)
        )
    )
    started = time.perf_counter()
    listed = runner.invoke(app, ["runs", str(root), "--format", "csv"])
    assert listed.exit_code == 0, listed.output
    assert len(listed.stdout.strip().splitlines()) == 5  # header and four runs
    result = compare.compare([root])
    assert time.perf_counter() - started < 10
    assert [r.name for r in result.runs] == sorted([good.name, "bad_best", "bad_types"])
    (warning,) = result.warnings
    assert "bomb (config.yaml nests or repeats too much (aliases?); nncli writes it plain)" in (
        warning
    )


HOLDER = """\
import sys
from pathlib import Path
from nncli.runs.lock import locked

with locked(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_running_run_whose_process_died_shows_as_killed(
    runner: CliRunner, checkpoint: Path, tmp_path: Path
) -> None:
    good = checkpoint.parent.parent
    killed, alive = good.parent / "killed", good.parent / "alive"
    for folder in (killed, alive):
        shutil.copytree(good, folder)
        (folder / "run.json").write_text(json.dumps({**info(good), "status": "running"}))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (killed / "run.lock").write_text(f"{dead.pid} flock\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(alive)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        listed = runner.invoke(app, ["runs", str(good.parent), "--format", "json"])
        assert listed.exit_code == 0, listed.output
        statuses = {r["run"]: r["status"] for r in json.loads(listed.stdout)}
        compared = {r.name: r.status for r in compare.compare([good.parent]).runs}
        only = runner.invoke(app, ["runs", str(good.parent), "--status", "killed", "-f", "csv"])
    finally:
        holder.communicate("")
    expected = {good.name: "completed", "killed": "killed", "alive": "running"}
    assert statuses == expected
    assert compared == expected
    assert only.exit_code == 0, only.output
    assert [line.split(",")[0] for line in only.stdout.splitlines()] == ["run", "killed"]
    assert (killed / "run.lock").read_text() == f"{dead.pid} flock\n"  # read, not changed
