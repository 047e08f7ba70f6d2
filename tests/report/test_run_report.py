"""report.html of one run: written when any run ends, self-contained, holding the run's
numbers, figures, model and config; a report that fails is a warning, never the run's."""

from __future__ import annotations

import base64
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import interrupted_run
from typer.testing import CliRunner

from nncli.cli.app import app


def train(runner: CliRunner, spec: Path, runs: Path, *args: str) -> Path:
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs), "-q", *args])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def urls(page: str) -> list[str]:
    """Every http(s) address in a page, data: URLs (base64 of PNGs) aside."""
    return re.findall(r"https?://", re.sub(r'data:image/png;base64,[^"]*', "", page))


def test_a_run_ends_with_a_self_contained_report_of_its_numbers(
    runner: CliRunner, tiny: Path, tmp_path: Path
) -> None:
    run = train(runner, tiny, tmp_path / "runs")

    page = (run / "report.html").read_text(encoding="utf-8")

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed"
    assert '<span class="status completed">completed</span>' in page
    # the final and best values as run.json writes them, on hover (title)
    for column, value in info["final"].items():
        if column not in ("epoch", "lr", "time_s"):
            assert f'title="{value!r}"' in page, column
    for column, best in info["best"].items():
        assert f'title="{best["value"]!r}"' in page, column
    # every figure the run drew, inlined
    pngs = sorted((run / "plots").iterdir())
    figures = ["loss", "accuracy", "f1", "confusion_matrix", "decision_boundary", "data"]
    assert [p.name for p in pngs] == sorted(f"{name}.png" for name in figures)
    for png in pngs:
        assert base64.b64encode(png.read_bytes()).decode() in page, png.name
    # the model as `nncli show` gives it: module, layer, settings, output shape, parameters
    assert (
        "<tr><td>0</td><td>dense</td><td>units=8, bias=True</td>"
        '<td>8</td><td class="n" data-v="24" title="24">24</td></tr>'
    ) in page
    assert "33 parameters" in page
    # every epoch's row of metrics.csv, in the sortable table
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for row in rows:
        assert f'title="{float(row["val_loss"])!r}"' in page
    assert page.count('<table class="sortable">') == 2
    # the config as written and as resolved, escaped
    assert "<pre>name: tiny\nseed: 7\n" in page
    assert "resolved (config.yaml)" in page
    assert urls(page) == []
    assert "<script src" not in page and "<link" not in page


def test_an_interrupted_run_has_its_report(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = interrupted_run(runner, tiny, tmp_path / "runs", monkeypatch, at=1)

    page = (run / "report.html").read_text(encoding="utf-8")

    assert '<span class="status interrupted">interrupted</span>' in page
    assert "<dd>1 of 3</dd>" in page


def test_a_failed_run_has_its_report_with_the_error(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nncli.engine.experiment

    def broken(*args: object) -> list[Path]:
        raise RuntimeError("the figure broke")

    monkeypatch.setattr(nncli.engine.experiment, "write_plots", broken)
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 1
    (run,) = (tmp_path / "runs").iterdir()

    page = (run / "report.html").read_text(encoding="utf-8")

    assert '<span class="status failed">failed</span>' in page
    assert '<div class="error">RuntimeError: the figure broke</div>' in page


def test_a_report_that_cannot_be_written_is_a_warning_not_the_runs_failure(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nncli.report.run

    def broken(folder: Path) -> Path:
        raise OSError("no room for a page")

    monkeypatch.setattr(nncli.report.run, "write_run_report", broken)
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path / "runs"), "-q"])

    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip())
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert not (run / "report.html").exists()
    warning = f"warning {run}/report.html was not written: no room for a page\n"
    assert result.stderr == warning
    assert f"warning: {run}/report.html was not written" in (run / "log.txt").read_text()


def test_plot_writes_the_report_again_with_the_new_figures(
    runner: CliRunner, tiny: Path, tmp_path: Path
) -> None:
    run = train(runner, tiny, tmp_path / "runs")
    (run / "report.html").unlink()

    result = runner.invoke(app, ["plot", str(run)])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == str(run / "report.html")
    page = (run / "report.html").read_text(encoding="utf-8")
    loss = (run / "plots" / "loss.png").read_bytes()
    assert base64.b64encode(loss).decode() in page


def test_the_command_is_recorded_as_typed_however_nncli_was_started(
    tiny: Path, tmp_path: Path
) -> None:
    # under `python -m nncli` the interpreter's argv[0] is nncli/__main__.py's path
    runs = tmp_path / "runs"
    args = ["train", str(tiny), "--runs-dir", str(runs), "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "nncli", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    run = Path(done.stdout.strip())
    assert json.loads((run / "run.json").read_text())["command"] == ["nncli", *args]
    assert f"nncli train {tiny} --runs-dir {runs} -q" in (run / "report.html").read_text()
