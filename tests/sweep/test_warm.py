"""How a warm sweep starts its trials (nncli/sweep/warm.py): the fork server is started
before the sweep checks its trials, so that its imports run beside that work, and the
sweep starts the next trial as soon as a forked one ends."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EXPERIMENTS, TINY
from typer.testing import CliRunner, Result

from nncli.cli.app import app
from nncli.engine.distributed import PLOTS_ENV
from nncli.errors import NncliError
from nncli.sweep import plan, warm
from nncli.sweep.forked import Forked
from nncli.sweep.space import Options
from nncli.sweep.state import create


def _calls(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str
) -> list[str]:
    """What `nncli sweep FILE ARGS` calls, in order, up to checking the trials (stopped
    there by a planted input error)."""
    calls: list[str] = []

    def planned(*_: object) -> None:
        calls.append("plan")
        raise NncliError("stop here")

    monkeypatch.setattr(warm, "prewarm", lambda *_: calls.append("prewarm"))
    monkeypatch.setattr(plan, "plan", planned)
    file = tmp_path / "exp.yaml"
    file.write_text(TINY)
    result = runner.invoke(app, ["sweep", str(file), "--grid", "optimizer.lr=0.1,0.2", *args])
    assert result.exit_code == 2 and "stop here" in result.output
    return calls


def test_the_fork_server_starts_before_the_trials_are_checked(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _calls(runner, tmp_path, monkeypatch) == ["prewarm", "plan"]


def _server_imports(monkeypatch: pytest.MonkeyPatch, *args: Any) -> list[str]:
    """What a fork server started by warm.prewarm(ARGS) imports for the trials, as it
    works that out from the environment it is spawned with."""
    found: list[list[str]] = []
    monkeypatch.setattr(warm, "_start_server", lambda: found.append(warm.server_imports()))
    warm.prewarm(*args)
    assert warm.PRELOAD_ENV not in os.environ  # the trials do not inherit it
    return found[0]


def test_the_fork_server_imports_what_the_trials_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "exp.yaml"
    file.write_text(TINY)
    assert _server_imports(monkeypatch, file, []) == []
    assert _server_imports(monkeypatch, file, ["data.source=digits"]) == ["sklearn.datasets"]
    assert _server_imports(monkeypatch) == []
    # --resume and --join: each trial of the sweep folder, with its own settings
    file.write_text(TINY.replace("  n_samples: 200\n  noise: 0.05\n", ""))
    options = Options(grid=["data.source=circles,breast_cancer"])
    sweep = create(plan.plan(file, [], options), tmp_path / "sweep")
    assert _server_imports(monkeypatch, None, [], sweep.folder) == ["sklearn.datasets"]
    assert _server_imports(monkeypatch, None, [], tmp_path / "nothing") == []


def test_a_new_sweeps_server_imports_what_its_searched_trials_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the search, not the file alone: --grid, the file's sweep: section, and bayes' choices
    file = tmp_path / "exp.yaml"
    base = TINY.replace("  n_samples: 200\n  noise: 0.05\n", "")
    file.write_text(base)
    grid = {"grid": ["data.source=circles,breast_cancer"]}
    assert _server_imports(monkeypatch, file, [], None, grid) == ["sklearn.datasets"]
    assert _server_imports(monkeypatch, file, [], None, {"grid": ["seed=1,2"]}) == []
    searched = (
        "sweep:\n  method: bayes\n  n_trials: 4\n  choice:\n    data.source: [circles, wine]\n"
    )
    file.write_text(base + searched)
    assert _server_imports(monkeypatch, file, []) == ["sklearn.datasets"]
    bad = {"grid": ["seed"]}  # refused by the sweep's own check, which says why
    assert _server_imports(monkeypatch, file, [], None, bad) == []


def test_sweeps_started_at_once_in_threads_each_tell_the_server_their_own_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prewarm sets its variable only around the spawn: a second sweep in another thread of
    # the process (a sweep may run in one) must not delete it under the first (KeyError)
    file = tmp_path / "exp.yaml"
    file.write_text(TINY)
    read: list[list[str]] = []
    second_in = threading.Event()

    def spawned() -> None:
        read.append(warm.server_imports())
        if len(read) == 1:
            second_in.wait(2)  # the other sweep's prewarm, were it let in now
        else:
            second_in.set()

    monkeypatch.setattr(warm, "_start_server", spawned)
    errors: list[BaseException] = []

    def sweep(sets: list[str]) -> None:
        try:
            warm.prewarm(file, sets)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in (["data.source=digits"], [])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(read) == [[], ["sklearn.datasets"]]
    assert warm.PRELOAD_ENV not in os.environ


def test_a_damaged_sweep_folder_is_refused_and_the_server_imports_nothing_for_it(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a trial in sweep.json that is no object: the sweep says so (exit 2, no traceback),
    # and the fork server, which reads the folder first, does not die of it
    file = tmp_path / "exp.yaml"
    file.write_text(TINY)
    sweep = create(plan.plan(file, [], Options(grid=["seed=1,2"])), tmp_path / "sweep")
    saved = json.loads((sweep.folder / "sweep.json").read_text())
    (sweep.folder / "sweep.json").write_text(json.dumps({**saved, "trials": [1, 2]}))
    before = (sweep.folder / "sweep.json").read_bytes()
    assert _server_imports(monkeypatch, None, [], sweep.folder) == []
    args = ["sweep", "--resume", str(sweep.folder), "--start", "process"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == (
        f"error {sweep.folder / 'sweep.json'} cannot be read: 'int' object has no attribute 'items'"
    )
    assert (sweep.folder / "sweep.json").read_bytes() == before


def test_a_bayes_sweeps_server_imports_what_its_trials_to_come_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --resume or --join of a bayes sweep before its first trial (or with some not yet
    # asked for): those trials take the file's data source (digits: sklearn.datasets)
    pytest.importorskip("optuna")
    file = tmp_path / "exp.yaml"
    file.write_text(TINY.replace("  n_samples: 200\n  noise: 0.05\n", ""))
    options = Options(range=["optimizer.lr=1e-3:0.3:log"], method="bayes", n_trials=3)
    sweep = create(plan.plan(file, ["data.source=digits"], options), tmp_path / "sweep")
    assert sweep.trials == []
    assert _server_imports(monkeypatch, None, [], sweep.folder) == ["sklearn.datasets"]


@pytest.mark.slow
def test_the_fork_server_does_not_hold_the_sweeps_output(tmp_path: Path) -> None:
    # `nncli sweep ... | tee log` ends with the sweep: here the sweep stops at an input error
    # while its fork server still imports torch, scikit-learn and MLflow for seconds
    exp = tmp_path / "exp.yaml"  # digits takes no n_samples: the input error
    exp.write_text(TINY.replace("circles", "digits") + "loggers: [mlflow]\n")
    command = [sys.executable, "-m", "nncli", "sweep", str(exp), "--grid", "seed=1,2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.wait(timeout=120) == 2
    ended = time.monotonic()
    _, stderr = proc.communicate(timeout=120)  # until no process holds the pipes
    assert "data.n_samples  unknown key" in stderr, stderr
    assert time.monotonic() - ended < 1.0


@pytest.mark.slow
def test_a_module_that_breaks_the_servers_imports_is_named_by_each_trial(tmp_path: Path) -> None:
    # a package whose import raises (no ImportError, which multiprocessing passes over): the
    # server, its stderr on /dev/null, goes on forking; each trial imports it again and fails
    # naming it (the sweep used to print only "Aborted!", exit 1, its trials never started)
    fake = tmp_path / "fake" / "sklearn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise RuntimeError("broken install")\n')
    exp = tmp_path / "exp.yaml"  # digits: the server imports sklearn.datasets for the trials
    exp.write_text(
        TINY.replace("  n_samples: 200\n  noise: 0.05\n", "").replace("circles", "digits")
    )
    paths = [str(tmp_path / "fake"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "nncli", "sweep", str(exp), "--grid", "seed=1,2"]
    command += ["--out", str(out)]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "Aborted!" not in done.stderr
    said = "exit 1: internal error RuntimeError: broken install."
    assert done.stderr.count(said) == 2, done.stderr
    trials = json.loads((out / "sweep.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["failed", "failed"]


@pytest.mark.parametrize("args", [["--start", "process"], ["--dry-run"], ["--nproc-per-node", "2"]])
def test_no_fork_server_where_no_trial_is_forked(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    assert _calls(runner, tmp_path, monkeypatch, *args) == ["plan"]


def test_waiting_ends_when_a_forked_trial_ends() -> None:
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(0.2,))
    child.start()
    began = time.monotonic()
    warm.wait_any([Forked(child)], timeout=60)
    waited = time.monotonic() - began
    child.join(5)
    assert child.exitcode == 0 and 0.1 < waited < 30  # its end, not the timeout


def _sweep_tiny(runner: CliRunner, tmp_path: Path, grid: str) -> tuple[Result, Path]:
    """`nncli sweep` of the tiny experiment over `--grid GRID`, in tmp_path/sweep."""
    file = tmp_path / "exp.yaml"
    file.write_text(TINY)
    out = tmp_path / "sweep"
    return runner.invoke(app, ["sweep", str(file), "--grid", grid, "--out", str(out)]), out


def test_the_next_trial_starts_as_soon_as_one_ends(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # not after a wait on the trials still running (which took up to 50 ms a trial)
    from nncli.cli import sweep as command

    seen: list[str] = []
    show, wait_any = command._sweep_event, warm.wait_any

    def shown(event: Any) -> None:
        seen.append(event.kind)
        show(event)

    def waited(procs: Any, timeout: float) -> None:
        seen.append("wait")
        wait_any(procs, timeout)

    monkeypatch.setattr(command, "_sweep_event", shown)
    monkeypatch.setattr(warm, "wait_any", waited)
    result, _ = _sweep_tiny(runner, tmp_path, "seed=1,2,3")
    assert result.exit_code == 0, result.output
    assert seen.count("start") == 3 and seen.count("end") == 3
    followed = [seen[i + 1] for i, kind in enumerate(seen[:-1]) if kind == "end"]
    assert followed == ["start", "start"], seen


def test_a_forked_trial_imports_no_module_of_nncli_itself(tmp_path: Path) -> None:
    # what the fork server has not imported, each trial imports again (circles: 80 ms a
    # trial when the command line was left out)
    script = f"""
import os, sys
out = os.dup(1)  # the server's preload lets go of stdout
import nncli.sweep.preload
before = set(sys.modules)
os.environ["{PLOTS_ENV}"] = "off"
sys.argv = ["nncli", "train", {str(EXPERIMENTS / "circles.yaml")!r}, "--runs-dir", {str(tmp_path)!r}, "-q"]
from nncli.cli.app import main
try:
    main()
except SystemExit:
    pass
os.write(out, " ".join(sorted(set(sys.modules) - before)).encode())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.glob("*/metrics.csv")), "the trial did not train"
    imported = done.stdout.split()
    assert not [m for m in imported if m.startswith("nncli")], imported


def test_the_servers_consoles_find_no_terminal_where_the_sweep_has_one() -> None:
    # a trial's consoles, made in the server as it imports the command line, print to the
    # trial's log: no colours or terminal width where the sweep runs in a terminal
    import pty

    result_r, result_w = os.pipe()
    main, tty = pty.openpty()
    script = f"""
import os
import nncli.sweep.preload
from nncli.cli.common import err, out
os.write({result_w}, repr((out.is_terminal, err.is_terminal, out.color_system)).encode())
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=tty, stderr=tty, pass_fds=[result_w]
    )
    os.close(tty)
    os.close(result_w)
    assert proc.wait(timeout=120) == 0
    with os.fdopen(result_r) as f:
        assert f.read() == "(False, False, None)"
    os.close(main)


@pytest.mark.parametrize(
    ("lines", "sets", "expected"),
    [
        ("data: {source: circles}", [], []),
        ("data: {source: digits}", [], ["sklearn.datasets"]),
        ("data: {source: timeseries, path: t.csv, target: y}", [], ["pandas"]),
        ("data: {source: parquet, path: t.parquet, target: y}", [], ["pandas", "pyarrow.parquet"]),
        ("data: {source: circles}", ["data.source=iris"], ["sklearn.datasets"]),
        (
            "data: {source: digits, augment: [horizontal_flip, {rotation: 10}]}\n"
            "loggers: [{mlflow: {tracking_uri: x}}, tensorboard]",
            [],
            ["kornia.augmentation", "mlflow", "sklearn.datasets", "torch.utils.tensorboard"],
        ),
        ("data: {source: digitz}\nloggers: [nope, 3]", [], []),  # the sweep's check says why
        ("data: [", [], []),
    ],
)
def test_the_trials_imports_are_those_of_their_entries(
    tmp_path: Path, lines: str, sets: list[str], expected: list[str]
) -> None:
    file = tmp_path / "exp.yaml"
    file.write_text(lines + "\n")
    assert warm.trial_imports(file, [sets]) == expected
    assert warm.trial_imports(tmp_path / "absent.yaml", [[]]) == []


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.0, 0.3])
def test_ctrl_c_while_the_fork_server_imports_interrupts_the_sweep_cleanly(
    tmp_path: Path, after: float
) -> None:
    # Ctrl-C goes to the terminal's whole process group: the fork server (importing torch
    # for a second or two from the sweep's start) ignores it, the sweep stops its trials
    exp = tmp_path / "exp.yaml"
    exp.write_text(TINY)
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "nncli", "sweep", str(exp), "--grid", "seed=1,2"]
    proc = subprocess.Popen(
        [*command, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's job is
    )
    deadline = time.monotonic() + 60
    while not (out / "sweep.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(after)  # 0.3 s: the sweep waits for its first trial, the server imports
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert f"finish the sweep with: nncli sweep --resume {out}" in stderr
    assert json.loads((out / "sweep.json").read_text())["status"] == "interrupted"
    resumed = subprocess.run(
        [sys.executable, "-m", "nncli", "sweep", "--resume", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr


def test_ctrl_c_while_the_trials_are_checked_writes_nothing(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # recorded, not raised wherever it lands (an import, pydantic), then acted on
    real = plan.plan

    def interrupted(*args: object) -> object:
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(warm, "prewarm", lambda *_: None)
    monkeypatch.setattr(plan, "plan", interrupted)
    result, out = _sweep_tiny(runner, tmp_path, "seed=1,2")
    assert result.exit_code == 130, result.output
    assert "interrupted before the sweep folder was made; nothing was written" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
