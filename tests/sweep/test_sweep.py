"""`nncli sweep`: grids over any dotted key, seeded random draws, every trial checked up
front, trials as real processes, --fail-fast, Ctrl-C/SIGTERM and --resume."""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import TINY
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config import yamlio
from nncli.runs.record import read_metrics
from nncli.sweep.bayes import BayesSearch
from nncli.sweep.plan import plan as make_plan
from nncli.sweep.space import Options, value_text
from nncli.sweep.state import create, reopen
from nncli.sweep.summary import unfinished

# two epochs of 200 samples: a trial is mostly its process starting
BASE = TINY.replace("epochs: 3", "epochs: 2").replace(
    "metrics: [accuracy, f1]", "metrics: [accuracy]"
)
GRID = (
    BASE
    + """\
sweep:
  grid:
    optimizer.lr: [0.1, 0.01]
    model.layers.0.dense: [4, 8, 16]
"""
)


def sweep_json(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "sweep.json").read_text())
    return data


def statuses(folder: Path) -> list[str]:
    return [t["status"] for t in sweep_json(folder)["trials"]]


def run_folders(folder: Path) -> list[Path]:
    return sorted((folder / "runs").iterdir())


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A 2 x 3 grid (one key a list item) run two trials at once: its folder and result."""
    tmp_path = tmp_path_factory.mktemp("grid")
    exp = tmp_path / "grid.yaml"
    exp.write_text(GRID)
    out = tmp_path / "sweep"
    args = ["sweep", str(exp), "--jobs", "2", "--out", str(out), "--format", "csv"]
    return out, CliRunner().invoke(app, args)


def test_grid_over_a_list_item_with_two_jobs(grid: tuple[Path, Any]) -> None:
    out, result = grid
    assert result.exit_code == 0, result.output

    # six completed trials, one run folder each, with the trial's settings in its config
    assert statuses(out) == ["completed"] * 6
    trials = sweep_json(out)["trials"]
    assert len(run_folders(out)) == 6
    for trial in trials:
        config = yaml.safe_load((out / trial["run"] / "config.yaml").read_text())
        assert config["optimizer"]["lr"] == trial["params"]["optimizer.lr"]
        assert config["model"]["layers"][0]["units"] == trial["params"]["model.layers.0.dense"]
        assert "sweep" not in config  # a trial's config trains as it is
    assert [t["params"] for t in trials[:2]] == [
        {"optimizer.lr": 0.1, "model.layers.0.dense": 4},
        {"optimizer.lr": 0.1, "model.layers.0.dense": 8},
    ]

    # a line per start and end as they happen; two at once: trial 2 starts before 1 ends
    lines = result.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if "  started  " in line]
    ends = [i for i, line in enumerate(lines) if "  completed  " in line]
    assert len(starts) == len(ends) == 6
    assert starts[1] < ends[0]
    assert "trial 1/6  started  optimizer.lr=0.1 model.layers.0.dense=4" in lines

    # the table is ranked by the monitor (val_loss), and best.yaml is the best trial's config
    best_loss = {
        t["number"]: min(r["val_loss"] for r in read_metrics(out / t["run"])) for t in trials
    }
    best = min(best_loss, key=lambda n: best_loss[n])
    best_run = out / trials[best - 1]["run"]
    assert yaml.safe_load((out / "best.yaml").read_text()) == yaml.safe_load(
        (best_run / "config.yaml").read_text()
    )
    assert sweep_json(out)["best"]["trial"] == best
    assert math.isclose(sweep_json(out)["best"]["value"], best_loss[best])
    assert f"best: trial {best} " in result.stderr
    assert result.stdout == (out / "summary.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0])[:3] == ["trial", "status", "optimizer.lr"]
    assert int(rows[0]["trial"]) == best
    assert [float(r["val_loss best"]) for r in rows] == sorted(best_loss.values())
    assert sweep_json(out)["status"] == "completed"


def test_resume_of_a_finished_sweep_ranks_it_again(
    grid: tuple[Path, Any], runner: CliRunner
) -> None:
    out, _ = grid
    result = runner.invoke(app, ["sweep", "--resume", str(out), "--metric", "val_accuracy"])
    assert result.exit_code == 0, result.output
    assert "6 trials (grid), 0 to run" in result.stderr
    trials = sweep_json(out)["trials"]
    accuracy = {
        t["number"]: max(r["val_accuracy"] for r in read_metrics(out / t["run"])) for t in trials
    }
    best = min(accuracy, key=lambda n: (-accuracy[n], n))  # ties: the first trial
    assert sweep_json(out)["best"]["trial"] == best
    assert sweep_json(out)["ranked_by"] == "val_accuracy"
    assert f"trial {best} of 6 ranks first by val_accuracy" in (out / "best.yaml").read_text()

    wrong = runner.invoke(app, ["sweep", "--resume", str(out), "--metric", "val_f1"])
    assert wrong.exit_code == 2
    assert "--metric val_f1: no run has a metric 'val_f1'" in wrong.stderr
    assert sweep_json(out)["best"]["trial"] == best  # unchanged


def dry_run(runner: CliRunner, exp: Path, *args: str) -> list[dict[str, str]]:
    result = runner.invoke(app, ["sweep", str(exp), "--dry-run", "--format", "csv", *args])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_random_search_is_reproducible_from_its_seed(runner: CliRunner, tmp_path: Path) -> None:
    exp = tmp_path / "random.yaml"
    exp.write_text(BASE)
    space = [
        "--range",
        "optimizer.lr=1e-4:1e-1:log",
        "--range",
        "train.batch_size=8:64",
        "--choice",
        "model.layers.1=relu,gelu,tanh",
        "--trials",
        "8",
    ]
    first = dry_run(runner, exp, *space, "--seed", "3")
    assert first == dry_run(runner, exp, *space, "--seed", "3")
    assert first != dry_run(runner, exp, *space, "--seed", "4")
    assert len(first) == 8
    for row in first:
        assert 1e-4 <= float(row["optimizer.lr"]) <= 0.1
        assert 8 <= int(row["train.batch_size"]) <= 64  # whole numbers: both ends are
        assert row["model.layers.1"] in ("relu", "gelu", "tanh")
    # log-uniform: about half the draws lie below the geometric middle (0.00316)
    assert any(float(r["optimizer.lr"]) < 0.00316 for r in first)
    assert any(float(r["optimizer.lr"]) > 0.00316 for r in first)
    assert not (tmp_path / "sweeps").exists()


def test_method_is_one_of_three(runner: CliRunner, tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(GRID)
    result = runner.invoke(app, ["sweep", str(exp), "--method", "annealing", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "'annealing' is not one of 'grid', 'random', 'bayes'" in result.output
    assert "--method <grid|random|bayes>" in runner.invoke(app, ["sweep", "--help"]).output


def test_every_trial_is_checked_before_the_first_runs(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "bad.yaml"
    exp.write_text(GRID.replace("optimizer.lr: [0.1, 0.01]", "optimizer.lr: [0.1, -1]"))
    result = runner.invoke(app, ["sweep", str(exp), "--grid", "train.batch_size=16,0"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error --grid train.batch_size=16,0  train.batch_size  Input should be greater than 0, "
        "got 0  (trial 2 of 12: optimizer.lr=0.1 model.layers.0.dense=4 train.batch_size=0; "
        "5 more trials too)",
        f"error {exp}:20:25  optimizer.lr  Input should be greater than 0, got -1  "
        "(trial 7 of 12: optimizer.lr=-1 model.layers.0.dense=4 train.batch_size=16; "
        "5 more trials too)",
    ]
    assert list(tmp_path.iterdir()) == [exp]  # no sweep folder, no run


def test_the_file_is_parsed_once_for_every_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    parse = yamlio.loads

    def counted(text: str, source: str) -> yamlio.Document:
        parsed.append(source)
        return parse(text, source)

    monkeypatch.setattr(yamlio, "loads", counted)
    exp = tmp_path / "grid.yaml"
    exp.write_text(GRID)
    planned = make_plan(exp, ["train.epochs=1"], Options(grid=["seed=1,2"]))
    assert len(planned.trials) == 12  # each validated, from the one parse
    assert parsed == [str(exp)]


def test_bayes_search_without_optuna_says_how_to_get_it(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails, installed or not
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    args = ["sweep", str(exp), "--method", "bayes", "--range", "optimizer.lr=1e-4:0.1:log"]
    result = runner.invoke(app, [*args, "--trials", "3", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "error bayes search needs Optuna, which is not installed: pip install 'nncli[optuna]' "
        "(grid and random search need nothing more)\n"
    )
    assert not (tmp_path / "s").exists()


def test_the_trials_that_did_not_complete_are_named_by_status() -> None:
    statuses = ["failed"] * 12 + ["completed", "interrupted", "pruned"]
    trials = [SimpleNamespace(number=n, status=s) for n, s in enumerate(statuses, 1)]
    sweep: Any = SimpleNamespace(trials=trials, space=SimpleNamespace(n_trials=16), folder="s")
    assert unfinished(sweep) == (
        "13 of 16 trials did not complete (trials 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more "
        "failed; trial 14 interrupted); run them again with: nncli sweep --resume s"
    )
    sweep.trials = [t for t in trials if t.status in ("completed", "pruned")]
    assert unfinished(sweep) is None


def test_fail_fast_stops_the_running_trials_and_resume_retries(
    runner: CliRunner, tmp_path: Path
) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    out = tmp_path / "sweep"
    # 4 samples validate but leave the val split empty: trial 1 fails as it prepares the
    # data (exit 2 from train) within 0.1 s, while trial 2 (300 epochs: 1.5-8 s) runs. Its
    # SIGTERM lands early in its life, where torch's own `except Exception` once swallowed
    # it (tests/engine/test_kill.py) and trial 2 completed
    args = ["--grid", "data.n_samples=4,200", "--set", "train.epochs=300", "--jobs", "2"]
    result = runner.invoke(app, ["sweep", str(exp), *args, "--out", str(out), "--fail-fast"])
    assert result.exit_code == 1, result.output
    assert statuses(out) == ["failed", "interrupted"]
    failed = sweep_json(out)["trials"][0]
    assert failed["exit_code"] == 2
    assert failed["run"] is None
    assert failed["error"] == (  # at the key, in the file every trial trains
        f"{exp}:7:11  data.split.val  the val split of 4 samples is empty; use more samples "
        "or a larger fraction"
    )
    assert (
        "trial 1/2  failed  data.n_samples=4" in result.stderr
        and f"{out}/logs/trial-001.log" in result.stderr
    )
    assert "--fail-fast: stopping the running trials (2)" in result.stderr

    # resume: trial 1 is run again (and fails again), trial 2 is finished
    result = runner.invoke(app, ["sweep", "--resume", str(out), "--jobs", "2", "-f", "csv"])
    assert result.exit_code == 1, result.output
    assert statuses(out) == ["failed", "completed"]
    assert [t["attempts"] for t in sweep_json(out)["trials"]] == [2, 2]
    assert len(run_folders(out)) == 1
    assert "1 of 2 trials did not complete (trial 1 failed); run them again" in result.stderr
    (row,) = csv.DictReader(io.StringIO(result.stdout))  # the table is still printed
    assert (row["trial"], row["status"], row["data.n_samples"]) == ("2", "completed", "200")
    assert (out / "best.yaml").is_file()

    # the plan of a sweep is fixed; its experiment file too
    refused = runner.invoke(app, ["sweep", "--resume", str(out), "--grid", "seed=1,2"])
    assert refused.exit_code == 2
    assert "give no --grid with it" in refused.stderr
    exp.write_text(BASE + "\n")
    edited = runner.invoke(app, ["sweep", "--resume", str(out)])
    assert edited.exit_code == 2
    assert "was edited after the sweep started" in edited.stderr


def test_a_stopped_sweep_resumes_only_the_missing_trials(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    out = tmp_path / "sweep"
    # trial 2 trains long enough to be stopped in the middle
    args = ["sweep", str(exp), "--grid", "train.epochs=2,60,3", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nncli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = list((out / "runs").glob("*/metrics.csv")) if (out / "runs").is_dir() else []
        if len(runs) == 2 and any(len(m.read_text().splitlines()) > 3 for m in runs):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert statuses(out) == ["completed", "interrupted", "pending"]
    assert sweep_json(out)["status"] == "interrupted"
    assert f"nncli sweep --resume {out}" in stderr
    first, second = (out / t["run"] for t in sweep_json(out)["trials"][:2])

    resumed = subprocess.run(
        [sys.executable, "-m", "nncli", "sweep", "--resume", str(out), "--jobs", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert statuses(out) == ["completed"] * 3
    assert len(run_folders(out)) == 3  # trial 1 was not run again
    assert "resumed" not in json.loads((first / "run.json").read_text())
    second_info = json.loads((second / "run.json").read_text())
    assert second_info["epochs_done"] == 60
    assert second_info["resumed"][0]["after_epoch"] >= 3  # continued, not started again
    assert f"trial 2/3  resuming runs/{second.name}" in resumed.stderr
    assert "trial 1/3" not in resumed.stderr


def test_values_pass_through_set_unchanged() -> None:
    for value in [0.001, 1e-05, 3, True, None, "relu", "0.1x", [8, 4], {"units": 8}, "yes"]:
        text = value_text(value)
        parsed = yamlio.parse_value(text)
        assert parsed == value and type(parsed) is type(value)
    assert value_text("true") == '"true"'  # the string, not the boolean


def test_bayes_keeps_its_study_in_storage_that_every_worker_shares(tmp_path: Path) -> None:
    """Asked and told through the sweep folder's journal: a second worker (or a resumed
    sweep) finds the same study, and trial numbers stay one sequence."""
    pytest.importorskip("optuna")
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    options = Options(
        choice=["model.layers.1=relu,gelu"], range=["optimizer.lr=1e-4:0.1:log"], n_trials=3
    )
    options.method = "bayes"
    plan = make_plan(exp, [], options)
    assert plan.trials == []
    sweep = create(plan, tmp_path / "sweep")
    search = BayesSearch(sweep)
    with sweep.sync():
        first = search.ask()
    assert first is not None and (first.number, first.optuna) == (1, 0)
    assert first.params["model.layers.1"] in ("relu", "gelu")
    first.status, first.value = "completed", 0.5
    search.tell(first)
    sweep.save()

    other = reopen(sweep.folder, None, retry=False)  # a joined worker
    joined = BayesSearch(other, seeded=False)
    with other.sync():
        second = joined.ask()
    assert second is not None and (second.number, second.optuna) == (2, 1)
    second.status = "failed"
    joined.tell(second)
    states = [(t.number, t.state.name, t.value) for t in search.study.trials]
    assert states == [(0, "COMPLETE", 0.5), (1, "FAIL", None)]
    assert sweep_json(sweep.folder)["trials"][1]["number"] == 2
    assert sweep_json(sweep.folder)["study"] == "sweep"


@pytest.mark.slow
def test_bayes_search_with_optuna_itself(tmp_path: Path) -> None:
    """The real library (the `optuna` extra, in dev): asked, told, seeded, and resumed."""
    pytest.importorskip("optuna")
    exp = tmp_path / "bayes.yaml"
    exp.write_text(BASE)
    out = tmp_path / "sweep"
    space = ["--method", "bayes", "--range", "optimizer.lr=1e-3:0.3:log", "--seed", "5"]
    space += ["--choice", "model.layers.1=relu,tanh", "--metric", "test_accuracy"]
    args = ["sweep", str(exp), *space, "--trials", "4", "--jobs", "2", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    trials = sweep_json(out)["trials"]
    assert [t["status"] for t in trials] == ["completed"] * 4
    for t in trials:
        assert 1e-3 <= t["params"]["optimizer.lr"] <= 0.3
        assert t["params"]["model.layers.1"] in ("relu", "tanh")
        metrics = read_metrics(out / t["run"])
        assert t["value"] == max(r["test_accuracy"] for r in metrics)
    best = max(trials, key=lambda t: t["value"])
    chosen = yaml.safe_load((out / "best.yaml").read_text())
    assert chosen["optimizer"]["lr"] == best["params"]["optimizer.lr"]

    # a resumed sweep's study starts from what the trials scored
    study = BayesSearch(reopen(out, None)).study
    assert sorted(t.value for t in study.trials) == sorted(t["value"] for t in trials)
    # the seed fixes what the sampler asks first
    options = Options(range=["optimizer.lr=1e-3:0.3:log"], method="bayes", seed=5)
    options.n_trials = 2
    asked = []
    for name in ("a", "b"):
        search = BayesSearch(create(make_plan(exp, [], options), tmp_path / name))
        first = search.ask()
        assert first is not None
        asked.append(first.params)
    assert asked[0] == asked[1]


def test_warm_trials_train_exactly_as_fresh_processes(runner: CliRunner, tmp_path: Path) -> None:
    # --start warm forks each trial from one process that imported torch once
    import torch

    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    results = {}
    for start in ("warm", "process"):
        out = tmp_path / start
        args = ["sweep", str(exp), "--grid", "optimizer.lr=0.1,0.01", "--jobs", "2"]
        result = runner.invoke(app, [*args, "--start", start, "--out", str(out)])
        assert result.exit_code == 0, result.output
        results[start] = [
            (
                [{k: v for k, v in row.items() if k != "time_s"} for row in read_metrics(run)],
                torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"],
            )
            for run in (out / t["run"] for t in sweep_json(out)["trials"])
        ]
    for (warm_rows, warm_weights), (rows, weights) in zip(
        results["warm"], results["process"], strict=True
    ):
        assert warm_rows == rows and len(rows) == 2
        assert warm_weights.keys() == weights.keys()
        assert all(torch.equal(warm_weights[k], weights[k]) for k in weights)


def test_trials_draw_no_figures_but_the_best_one_gets_them_when_the_sweep_ends(
    runner: CliRunner, tmp_path: Path
) -> None:
    """sweep.plots: best (the default): a trial's figures cost more than circles' training,
    so the trials draw none and the sweep draws its best trial's at the end; `all` draws
    every trial's as before."""
    exp = tmp_path / "exp.yaml"
    for plots, drawn in (("best", 1), ("all", 3)):
        exp.write_text(BASE + ("" if plots == "best" else "sweep:\n  plots: all\n"))
        out = tmp_path / plots
        args = ["sweep", str(exp), "--grid", "optimizer.lr=0.3,0.1,0.01", "--out", str(out)]
        result = runner.invoke(app, [*args, "-f", "csv"])
        assert result.exit_code == 0, result.output
        info = sweep_json(out)
        assert info["plots"] == plots
        best = out / info["best"]["run"]
        with_figures = [run for run in run_folders(out) if (run / "plots" / "loss.png").is_file()]
        assert len(with_figures) == drawn and best in with_figures
        assert '<img alt="loss.png"' in (best / "report.html").read_text()  # redrawn
        for run in run_folders(out):  # every run folder otherwise whole
            assert json.loads((run / "run.json").read_text())["status"] == "completed"
            assert (run / "checkpoints" / "last.pt").is_file()
