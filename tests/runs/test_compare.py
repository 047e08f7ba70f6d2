"""`nncli compare`: three tiny real runs, then broken copies of them, and runs read while
they are written."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EXPERIMENTS
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.errors import NncliError
from nncli.metrics import direction
from nncli.runs import compare, listing, record
from nncli.runs.files import METRICS, RUN_JSON
from nncli.runs.folder import STATUSES

CIRCLES = EXPERIMENTS / "circles.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BASE = ["run", "status", "epochs", "params", "duration_s"]
DIFFERING = ["model.layers.0.units", "optimizer.lr"]
METRIC_COLUMNS = ["train_loss", "train_accuracy", "test_loss", "test_accuracy"]
# (learning rate, width of the hidden layer) of the three runs
SETTINGS = [(0.01, 4), (0.1, 8), (0.1, 4)]

runner = CliRunner()


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def runs_json(*args: str | Path) -> list[dict[str, Any]]:
    result = invoke("runs", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three completed runs of circles that differ in learning rate and width."""
    root = tmp_path_factory.mktemp("trained")
    folders = []
    for lr, units in SETTINGS:
        result = invoke(
            "train",
            CIRCLES,
            "--runs-dir",
            root / "runs",
            "-q",
            *("--set", f"optimizer.lr={lr}"),
            *("--set", f"model.layers.0.dense={units}"),
            *("--set", "train.epochs=3"),
            *("--set", "data.n_samples=200"),
            *("--set", "train.device=cpu"),
        )
        assert result.exit_code == 0, result.output
        folders.append(Path(result.stdout.strip().splitlines()[-1]))
    return folders


@pytest.fixture
def runs(trained: list[Path], tmp_path: Path) -> list[Path]:
    """Copies of the trained runs in tmp_path/runs, free to break."""
    copies = []
    for folder in trained:
        copy = tmp_path / "runs" / folder.name
        shutil.copytree(folder, copy)
        copies.append(copy)
    return copies


def compare_json(*args: str | Path) -> dict[str, Any]:
    result = invoke("compare", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def best_in_csv(folder: Path, column: str) -> tuple[float, int]:
    """The best value of a column and the first epoch that reached it, read with csv."""
    with (folder / METRICS).open(encoding="utf-8", newline="") as f:
        rows = [(float(r[column]), int(r["epoch"])) for r in csv.DictReader(f)]
    pick = min if direction(column) == "min" else max
    value = pick(v for v, _ in rows)
    return value, next(e for v, e in rows if v == value)


def test_differing_keys_are_columns_and_the_rest_is_shown_once(runs: list[Path]) -> None:
    data = compare_json(*runs, "--out", runs[0].parent.parent / "out")

    columns = list(data["runs"][0])
    assert columns[:5] == BASE
    assert columns[5:7] == DIFFERING
    assert columns[7:] == [c for m in METRIC_COLUMNS for c in (m, f"{m} best", f"{m} best epoch")]
    assert [(r["optimizer.lr"], r["model.layers.0.units"]) for r in data["runs"]] == SETTINGS
    assert data["same"]["train.epochs"] == 3
    assert data["same"]["data.n_samples"] == 200
    assert data["same"]["optimizer.betas"] == [0.9, 0.999]
    assert not set(DIFFERING) & set(data["same"])
    assert {r["status"] for r in data["runs"]} == {"completed"}
    assert [r["epochs"] for r in data["runs"]] == [3, 3, 3]
    assert [r["params"] for r in data["runs"]] == [17, 33, 17]


def test_best_values_and_epochs_match_metrics_csv(runs: list[Path]) -> None:
    data = compare_json(*runs, "--out", runs[0].parent.parent / "out")

    for folder, row in zip(runs, data["runs"], strict=True):
        assert row["run"] == folder.name
        for column in METRIC_COLUMNS:
            value, epoch = best_in_csv(folder, column)
            assert row[f"{column} best"] == pytest.approx(value)
            assert row[f"{column} best epoch"] == epoch


def test_table_shows_the_same_keys_above_the_table(runs: list[Path], tmp_path: Path) -> None:
    result = invoke("compare", *runs, "--out", tmp_path / "out")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("same in all runs: name=circles, seed=42, ")
    assert "train.epochs=3" in result.stdout
    assert "optimizer.lr=" not in result.stdout
    assert result.stderr == f"summary and figures: {tmp_path / 'out'}\n"


def test_sort_is_best_first_and_top_keeps_the_best(runs: list[Path], tmp_path: Path) -> None:
    losses = [best_in_csv(folder, "test_loss")[0] for folder in runs]
    accuracies = [best_in_csv(folder, "test_accuracy")[0] for folder in runs]
    by_loss = [runs[i].name for i in sorted(range(3), key=lambda i: losses[i])]
    by_accuracy = [runs[i].name for i in sorted(range(3), key=lambda i: -accuracies[i])]

    data = compare_json(*runs, "--sort", "test_loss", "--out", tmp_path / "a")
    assert [r["run"] for r in data["runs"]] == by_loss
    data = compare_json(*runs, "--sort", "accuracy", "--out", tmp_path / "b")  # its test split
    assert [r["run"] for r in data["runs"]] == by_accuracy
    data = compare_json(*runs, "--sort", "test_loss", "--top", "2", "--out", tmp_path / "c")
    assert [r["run"] for r in data["runs"]] == by_loss[:2]
    data = compare_json(*runs, "--top", "1", "--out", tmp_path / "d")  # by the monitored loss
    assert [r["run"] for r in data["runs"]] == by_loss[:1]
    data = compare_json(*runs, "--sort", "optimizer.lr", "--out", tmp_path / "e")
    assert [r["optimizer.lr"] for r in data["runs"]] == [0.01, 0.1, 0.1]

    result = invoke("compare", *runs, "--sort", "nonsense", "--out", tmp_path / "f")
    assert result.exit_code == 2
    assert "cannot sort by 'nonsense'" in result.stderr


def test_metric_chooses_columns(runs: list[Path], tmp_path: Path) -> None:
    data = compare_json(*runs, "--metric", "test_accuracy", "-m", "loss", "--out", tmp_path / "a")
    metric_columns = list(data["runs"][0])[7:]
    assert metric_columns[::3] == ["train_loss", "test_loss", "test_accuracy"]

    result = invoke("compare", *runs, "--metric", "f1", "--out", tmp_path / "b")
    assert result.exit_code == 2
    assert "no run has a metric 'f1'" in result.stderr


def test_every_format(runs: list[Path], tmp_path: Path) -> None:
    result = invoke("compare", *runs, "--format", "csv", "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["run"] for r in rows] == [f.name for f in runs]
    assert [r["optimizer.lr"] for r in rows] == ["0.01", "0.1", "0.1"]
    assert "same in all runs" not in result.stdout

    result = invoke("compare", *runs, "--format", "markdown", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "| run | status | epochs | params | duration_s | model.layers.0.units"
    )
    assert lines[1].startswith("|---|")
    assert len(lines) == 2 + 3

    data = compare_json(*runs, "--out", tmp_path / "c")
    assert set(data) == {"same", "runs"}


def test_out_folder_holds_summary_and_figures(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("compare", *runs, "--format", "csv", "--out", out)
    assert result.exit_code == 0, result.output

    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "loss.png", "summary.csv"]
    for figure in ("loss.png", "accuracy.png"):
        assert (out / figure).read_bytes()[:8] == PNG_SIGNATURE
    summary = (out / "summary.csv").read_text(encoding="utf-8")
    assert summary == result.stdout
    assert len(list(csv.DictReader(io.StringIO(summary)))) == 3

    # an existing folder is never written into
    again = invoke("compare", *runs, "--out", out)
    assert again.exit_code == 2
    assert f"{out} already exists and is not empty" in again.stderr


def test_without_out_nothing_is_written(runs: list[Path], tmp_path: Path) -> None:
    before = sorted(tmp_path.rglob("*"))
    for fmt in ("json", "table", "csv"):
        result = invoke("compare", runs[0].parent, "--format", fmt)
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
    assert sorted(tmp_path.rglob("*")) == before
    assert (
        len(json.loads(invoke("compare", runs[0].parent, "--format", "json").stdout)["runs"]) == 3
    )


def test_a_table_is_folded_to_a_terminal_only(
    runs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # into a pipe or a file (as here): every cell on one line, however wide the table
    piped = invoke("compare", *runs, "--out", tmp_path / "piped")
    assert piped.exit_code == 0, piped.output
    lines = piped.stdout.splitlines()
    assert all(any(run.name in line for line in lines) for run in runs)
    header = next(line for line in lines if "train_accuracy best epoch" in line)
    assert len(header) > 200
    assert "folded" not in piped.stdout
    # on an 80-column terminal: folded to fit, with the way to see it whole
    from rich.console import Console

    from nncli.cli import common
    from nncli.cli import runs as runs_cli

    terminal = Console(force_terminal=True, width=80, highlight=False)
    for module in (common, runs_cli):  # where tables are printed, and compare's own lines
        monkeypatch.setattr(module, "out", terminal)
    shown = invoke("compare", *runs, "--out", tmp_path / "terminal")
    assert shown.exit_code == 0, shown.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", shown.stdout)  # the terminal's styles
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and max(len(line) for line in table) <= 80
    assert not any(run.name in text for run in runs)  # names folded over lines
    assert "the table is folded to fit the terminal; show fewer columns with --metric" in (
        " ".join(text.split())
    )
    # --metric given: no advice to give it
    shown = invoke("compare", *runs, "--metric", "test_accuracy")
    assert shown.exit_code == 0, shown.output
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", shown.stdout).split())
    assert "the table is folded to fit the terminal; see it whole with --format csv" in text
    assert "--metric" not in text


def test_legend_names_runs_by_what_differs(runs: list[Path]) -> None:
    result = compare.compare(runs)
    assert result.labels == [
        "model.layers.0.units=4, optimizer.lr=0.01",
        "model.layers.0.units=8, optimizer.lr=0.1",
        "model.layers.0.units=4, optimizer.lr=0.1",
    ]
    assert compare.compare(runs[:1]).labels == [runs[0].name]  # nothing differs


def test_broken_and_running_runs_do_not_break_the_comparison(
    runs: list[Path], tmp_path: Path
) -> None:
    parent = runs[0].parent
    running = shutil.copytree(runs[0], parent / "running_copy")
    info = json.loads((running / RUN_JSON).read_text(encoding="utf-8"))
    info.update(status="running", epochs_done=2)
    (running / RUN_JSON).write_text(json.dumps(info), encoding="utf-8")
    text = (running / METRICS).read_text(encoding="utf-8")
    (running / METRICS).write_text("".join(text.splitlines(True)[:3]), encoding="utf-8")

    truncated = shutil.copytree(runs[1], parent / "truncated_copy")
    text = (truncated / METRICS).read_text(encoding="utf-8")
    (truncated / METRICS).write_text(text[: len(text) - 20], encoding="utf-8")

    bad_json = shutil.copytree(runs[2], parent / "bad_json_copy")
    (bad_json / RUN_JSON).write_text('{"name": "circles", "status": ', encoding="utf-8")

    bad_yaml = shutil.copytree(runs[2], parent / "bad_yaml_copy")
    (bad_yaml / "config.yaml").write_text("model: [unclosed\n", encoding="utf-8")

    (parent / "notes.txt").write_text("not a run\n", encoding="utf-8")
    (parent / "empty_folder").mkdir()

    everything = sorted(parent.iterdir())  # what `nncli compare runs/*` passes
    result = invoke("compare", *everything, "--format", "json", "--out", tmp_path / "out")

    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 2, result.stderr
    assert warnings[0].startswith("warning skipped 2 paths that are not run folders: ")
    assert "empty_folder" in warnings[0]
    assert "notes.txt" in warnings[0]
    assert warnings[1].startswith("warning left out 3 unreadable runs: ")
    assert f"{bad_json} (run.json: " in warnings[1]
    assert f"{bad_yaml} (config.yaml: " in warnings[1]
    assert f"{truncated} (metrics.csv is truncated" in warnings[1]
    rows = {r["run"]: r for r in json.loads(result.stdout)["runs"]}
    assert set(rows) == {*(f.name for f in runs), "running_copy"}
    assert rows["running_copy"]["status"] == "running"
    assert rows["running_copy"]["epochs"] == 2
    assert rows["running_copy"]["test_loss best epoch"] in (1, 2)


def test_smoke_runs_are_left_out_unless_asked(runs: list[Path]) -> None:
    data = json.loads((runs[1] / RUN_JSON).read_text(encoding="utf-8"))
    (runs[1] / RUN_JSON).write_text(json.dumps({**data, "smoke": True}), encoding="utf-8")

    result = invoke("compare", *runs, "--format", "json")
    assert result.exit_code == 0, result.output
    assert [r["run"] for r in json.loads(result.stdout)["runs"]] == [runs[0].name, runs[2].name]
    assert result.stderr == (
        f"warning left out 1 smoke run (--smoke includes them): {runs[1].name}\n"
    )

    data = compare_json(*runs, "--smoke")
    assert [r["run"] for r in data["runs"]] == [f.name for f in runs]

    only = invoke("compare", runs[1])
    assert only.exit_code == 2
    assert only.stderr.startswith("error no usable run to compare (left out 1 smoke run")


def test_runs_with_different_metrics_show_the_union(runs: list[Path], tmp_path: Path) -> None:
    folder = runs[0]
    with (folder / METRICS).open(encoding="utf-8", newline="") as f:
        kept = [
            {k: v for k, v in row.items() if not k.endswith("accuracy")}
            for row in csv.DictReader(f)
        ]
    with (folder / METRICS).open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(kept[0]))
        writer.writeheader()
        writer.writerows(kept)

    data = compare_json(*runs, "--sort", "test_accuracy", "--out", tmp_path / "out")

    assert [r["run"] for r in data["runs"]][-1] == folder.name  # missing the metric: last
    assert data["runs"][-1]["test_accuracy"] is None
    assert data["runs"][-1]["test_loss"] is not None


def test_a_diverged_run_says_so(runs: list[Path], tmp_path: Path) -> None:
    lines = (runs[0] / METRICS).read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    last = lines[-1].split(",")
    last[header.index("test_loss")] = "nan"
    (runs[0] / METRICS).write_text("\n".join([*lines[:-1], ",".join(last)]) + "\n", "utf-8")
    info = json.loads((runs[0] / RUN_JSON).read_text(encoding="utf-8"))
    info["final"]["test_loss"] = None  # how run.json stores a NaN
    (runs[0] / RUN_JSON).write_text(json.dumps(info), encoding="utf-8")

    data = compare_json(*runs, "--out", tmp_path / "out")
    row = next(r for r in data["runs"] if r["run"] == runs[0].name)
    assert row["status"] == "completed (diverged)"
    assert row["test_loss"] is None
    assert row["test_loss best"] is not None
    listed = {r["run"]: r["status"] for r in runs_json(runs[0].parent)}
    assert listed[runs[0].name] == "completed (diverged)"


def test_no_usable_run_is_an_error(runs: list[Path], tmp_path: Path) -> None:
    (runs[0] / RUN_JSON).write_text("not json", encoding="utf-8")
    stray = tmp_path / "notes.txt"
    stray.write_text("hello", encoding="utf-8")

    result = invoke("compare", runs[0], stray, tmp_path / "missing", "--out", tmp_path / "out")

    assert result.exit_code == 2
    assert result.stderr.startswith("error no usable run to compare (skipped 2 paths")
    assert "unreadable run" in result.stderr
    assert not (tmp_path / "out").exists()


def test_flatten_and_text() -> None:
    config = {
        "optimizer": {"lr": 0.01, "betas": [0.9, 0.999]},
        "model": {"layers": [{"type": "dense", "units": 8}, {"type": "gelu"}]},
        "metrics": ["accuracy"],
    }
    assert record.flatten(config) == {
        "optimizer.lr": 0.01,
        "optimizer.betas": [0.9, 0.999],
        "model.layers.0.type": "dense",
        "model.layers.0.units": 8,
        "model.layers.1.type": "gelu",
        "metrics": ["accuracy"],
    }
    assert [compare.text(v) for v in (True, None, [0.9, 0.999], 1e-08)] == [
        "true",
        "null",
        "[0.9, 0.999]",
        "1e-08",
    ]


@pytest.mark.parametrize("command", ["compare", "runs"])
def test_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "--format" in result.stdout


def test_compare_help_documents_the_columns() -> None:
    result = invoke("compare", "--help")
    assert "test_accuracy best epoch" in result.stdout
    assert "--sort" in result.stdout


WRITER = """\
import random, sys, time
from pathlib import Path
from nncli.runs import folder as runs

root, seed, until = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(seed)
header = runs.columns(["train", "val"], ["accuracy"])
config = "optimizer: {{lr: {lr}}}\\nmodel: {{layers: [{{type: dense, units: {units}}}]}}\\n"
made = 0
while time.time() < until:
    run = runs.Run.create(
        root, f"w{seed}", "x: 1\\n", config.format(lr=rng.choice([0.1, 0.01]), units=made),
        {"epochs": 6, "epochs_done": 0, "monitor": "val_loss", "n_params": made},
    )
    run.start_metrics(header)
    epoch, resumed = 1, False
    while epoch <= 6:
        run.log_epoch({**{c: rng.random() for c in header}, "epoch": epoch})
        time.sleep(0.005)  # an epoch takes a moment: readers meet runs in every state
        if epoch == 3 and not resumed and rng.random() < 0.5:  # killed, then resumed from 2
            resumed = True
            run._metrics.close()
            run.write_info(status="running", resumed=[{"after_epoch": 2}])
            run.start_metrics(header, keep_epochs=2)
            epoch = 2
        epoch += 1
    run.finish(rng.choice(["completed", "failed", "interrupted"]))
    made += 1
print(made)
"""


def test_compare_and_runs_never_fail_while_runs_are_written(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    until = time.time() + 4
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(seed), str(until)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in range(2)
    ]
    runner = CliRunner()
    reads = compared = 0
    try:
        while time.time() < until:
            try:
                result = compare.compare([root])
            except NncliError as exc:  # only before the first run.json exists
                assert "no usable run to compare" in str(exc)
                assert not any(record.is_run(p) for p in root.iterdir())
            else:
                compared += 1
                assert result.warnings == []  # no running run reads as unreadable
                json.loads(result.json())
            rows = listing.list_runs(root)
            assert all(row["status"] in STATUSES for row in rows)
            listed = runner.invoke(app, ["runs", str(root), "--format", "json"])
            assert listed.exit_code == 0, listed.output
            reads += 1
    finally:
        made = [int(w.communicate(timeout=60)[0]) for w in writers]
    assert [w.returncode for w in writers] == [0, 0]
    assert sum(made) >= 4 and reads >= 3 and compared >= 2, (made, reads, compared)
    # and the command itself, figures included, over what the writers left
    out = runner.invoke(app, ["compare", str(root), "--out", str(tmp_path / "cmp"), "-m", "loss"])
    assert out.exit_code == 0, out.output


def write_metrics(folder: Path, split: str, accuracies: list[float]) -> None:
    """Replace a run's metrics.csv with one held-out `split` and these accuracies."""
    header = f"epoch,train_loss,train_accuracy,{split}_loss,{split}_accuracy,lr,time_s"
    rows = [f"{e},0.5,0.5,{1 - a},{a},0.1,0.01" for e, a in enumerate(accuracies, start=1)]
    (folder / METRICS).write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def test_sort_by_a_bare_metric_ranks_each_run_by_its_best_held_out_split(
    runs: list[Path], tmp_path: Path
) -> None:
    write_metrics(runs[0], "test", [0.6, 0.9, 0.8])
    write_metrics(runs[1], "val", [0.7, 0.7, 0.7])  # the only run with a val split
    write_metrics(runs[2], "test", [0.8, 0.5, 0.5])

    result = invoke("compare", *runs, "--sort", "accuracy", "--format", "json")

    assert result.exit_code == 0, result.output
    order = [r["run"] for r in json.loads(result.stdout)["runs"]]
    assert order == [runs[0].name, runs[2].name, runs[1].name]  # 0.9, 0.8, 0.7
    assert result.stderr.splitlines()[0] == (
        f"warning sorted by val_accuracy; 2 runs without it are ranked by test_accuracy: "
        f"{runs[0].name}, {runs[2].name}"
    )


def test_sort_by_a_metric_some_runs_lack_names_them(runs: list[Path], tmp_path: Path) -> None:
    write_metrics(runs[0], "test", [0.6, 0.9, 0.8])
    write_metrics(runs[1], "val", [0.95, 0.7, 0.7])
    header, *rows = (runs[2] / METRICS).read_text(encoding="utf-8").splitlines()
    keep = [i for i, c in enumerate(header.split(",")) if not c.endswith("accuracy")]
    (runs[2] / METRICS).write_text(
        "\n".join(",".join(line.split(",")[i] for i in keep) for line in [header, *rows]) + "\n",
        encoding="utf-8",
    )

    result = compare.compare(runs, sort="test_accuracy")

    assert [r.name for r in result.runs] == [runs[1].name, runs[0].name, runs[2].name]
    assert result.warnings == [
        f"sorted by test_accuracy; 1 run without it is ranked by val_accuracy: {runs[1].name}",
        f"1 run without accuracy goes last: {runs[2].name}",
    ]


STACKS = {
    "mlp": "[{type: dense, units: 16}, {type: gelu}, {type: dense, units: 1}, {type: sigmoid}]",
    "softmax": "[{type: dense, units: 4}]",
    "lenet": "[{type: conv2d, out_channels: 6, kernel_size: 3}, {type: relu}, "
    "{type: maxpool2d, kernel_size: 2}, {type: flatten}, {type: dropout, p: 0.5}, "
    "{type: dense, units: 120}, {type: relu}, {type: dense, units: 10}]",
}


def architecture_runs(root: Path) -> list[Path]:
    """Three runs of different layer stacks and data, each with its own long settings."""
    folders = []
    for i, (name, stack) in enumerate(STACKS.items()):
        folder = root / f"2026-11-25T10-0{i}-00_{name}_abcd"
        folder.mkdir(parents=True)
        info = {"name": name, "status": "completed", "epochs_done": 2, "n_params": 100 * (i + 1)}
        (folder / RUN_JSON).write_text(json.dumps(info), encoding="utf-8")
        data = ", ".join(f"setting_{name}_{k}: {k}" for k in range(12))
        (folder / "config.yaml").write_text(
            f"name: {name}\ndata: {{source: {name}_data, {data}}}\nmodel: {{layers: {stack}}}\n",
            encoding="utf-8",
        )
        write_metrics(folder, "test", [0.5, 0.6])
        folders.append(folder)
    return folders


def test_runs_of_different_architectures_show_one_model_column(tmp_path: Path) -> None:
    runs = architecture_runs(tmp_path / "runs")

    result = compare.compare(runs)

    assert [r["model"] for r in result.rows] == [
        "dense16-gelu-dense1-sigmoid",
        "dense4",
        "conv2d6-relu-maxpool2d2-flatten-dropout0.5-dense120-relu-dense10",
    ]
    table = result.table_columns
    assert table[:7] == [*BASE, "model", "name"]
    assert not [c for c in table if c.startswith("model.layers.")]
    assert len(table) == 5 + 1 + 1 + 1 + 36 + 4 * 3  # + name, data.source, 36 settings
    assert "model.layers.1.type" in result.columns  # csv and json keep every key
    assert result.labels == [
        "mlp, dense16-gelu-dense1-sigmoid (100 params), ...",
        "softmax, dense4 (200 params), data.source=softmax_data, ...",
        "lenet, conv2d6-relu-maxpool2d2... (300 params), ...",
    ]

    markdown = invoke("compare", *runs, "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    assert markdown.stdout.startswith("| run | status | epochs | params | duration_s | model | ")
    assert "model.layers" not in markdown.stdout
    csv_out = invoke("compare", *runs, "--format", "csv", "--out", tmp_path / "out")
    assert csv_out.exit_code == 0, csv_out.output
    header = csv_out.stdout.splitlines()[0].split(",")
    assert header == result.columns
    assert (tmp_path / "out" / "summary.csv").read_text(encoding="utf-8") == csv_out.stdout
    for figure in ("loss.png", "accuracy.png"):
        png = (tmp_path / "out" / figure).read_bytes()
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width <= 1600 and height <= 700, (figure, width, height)
