"""`nncli report RUN... [--out FILE]`: one page for several runs (or a sweep), one run's
page for one; damaged runs and files nncli did not write are refused with exit code 2."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import QUICK
from typer.testing import CliRunner

from nncli.cli.app import app


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two quick circles runs that differ in their learning rate."""
    tmp = tmp_path_factory.mktemp("two")
    spec = tmp / "quick.yaml"
    spec.write_text(QUICK)
    runner = CliRunner()
    for lr in ("0.05", "0.01"):
        args = ["train", str(spec), "--runs-dir", str(tmp / "runs"), "-q", "--set"]
        result = runner.invoke(app, [*args, f"optimizer.lr={lr}"])
        assert result.exit_code == 0, result.output
    return tmp / "runs"


def copy_runs(two_runs: Path, tmp_path: Path) -> list[Path]:
    shutil.copytree(two_runs, tmp_path / "runs")
    return sorted((tmp_path / "runs").iterdir())


def test_report_of_several_runs_is_one_page_with_the_comparison_and_overlays(
    runner: CliRunner, two_runs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "several.html"

    result = runner.invoke(app, ["report", str(two_runs), "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    page = out.read_text(encoding="utf-8")
    assert "<h1>2 runs</h1>" in page
    runs = sorted(two_runs.iterdir())
    for run in runs:
        assert f"<td>{run.name}</td>" in page
        info = json.loads((run / "run.json").read_text())
        assert f'title="{info["final"]["test_accuracy"]!r}"' in page
    assert "<b>differing keys</b>: optimizer.lr</p>" in page
    assert "<th>optimizer.lr</th>" in page and "<td>0.05</td>" in page
    # an overlay figure per metric: loss, accuracy (QUICK has f1 too)
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert captions == ["loss.png", "accuracy.png", "f1.png"]
    assert re.findall(r"https?://", re.sub(r'src="data:[^"]*"', "", page)) == []


def test_report_of_one_run_is_its_own_page_in_the_current_folder(
    runner: CliRunner, two_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = sorted(two_runs.iterdir())[0]
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["report", str(run)])

    assert result.exit_code == 0, result.output
    assert result.stdout == "report.html\n"
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    # the page the run wrote when it ended, but for the times it shows (none differ here)
    assert page == (run / "report.html").read_text(encoding="utf-8")


def test_report_of_a_sweep_folder_covers_its_runs(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "quick.yaml"
    spec.write_text(QUICK)
    sweep = tmp_path / "sweep"
    args = ["sweep", str(spec), "--grid", "optimizer.lr=0.05,0.01", "--out", str(sweep)]
    assert runner.invoke(app, args).exit_code == 0
    out = tmp_path / "sweep.html"

    result = runner.invoke(app, ["report", str(sweep), "--out", str(out)])

    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "<h1>2 runs</h1>" in page
    for run in (sweep / "runs").iterdir():
        assert f"<td>{run.name}</td>" in page


def test_a_folder_as_out_gets_report_html_and_an_old_report_is_replaced(
    runner: CliRunner, two_runs: Path, tmp_path: Path
) -> None:
    (tmp_path / "report.html").write_text('<meta name="generator" content="nncli report">old')

    result = runner.invoke(app, ["report", str(two_runs), "--out", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'report.html'}\n"
    assert "<h1>2 runs</h1>" in (tmp_path / "report.html").read_text()


def test_a_file_nncli_did_not_write_is_never_overwritten(
    runner: CliRunner, two_runs: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "notes.html"
    mine.write_bytes(b"<p>my notes</p>")

    result = runner.invoke(app, ["report", str(two_runs), "--out", str(mine)])

    assert result.exit_code == 2
    assert result.stderr == (
        f"error {mine} exists and is not a report nncli wrote; choose another --out (nncli "
        "overwrites only its own reports)\n"
    )
    assert mine.read_bytes() == b"<p>my notes</p>"


def test_a_damaged_metrics_csv_is_named_and_nothing_is_written(
    runner: CliRunner, two_runs: Path, tmp_path: Path
) -> None:
    first, _ = copy_runs(two_runs, tmp_path)
    metrics = first / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes()[:-3])  # cut inside its last line
    out = tmp_path / "out.html"

    result = runner.invoke(app, ["report", str(tmp_path / "runs"), "--out", str(out)])

    assert result.exit_code == 2
    assert result.stderr == (
        f"error {metrics} is truncated (its last line is incomplete); repair the file, or "
        "leave this run out of the report\n"
    )
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_damaged_run_json_is_named(runner: CliRunner, two_runs: Path, tmp_path: Path) -> None:
    _, second = copy_runs(two_runs, tmp_path)
    (second / "run.json").write_text('{"epochs": "three"}')

    result = runner.invoke(app, ["report", str(second), "--out", str(tmp_path / "out.html")])

    assert result.exit_code == 2
    assert result.stderr == (
        f'error {second}/run.json: epochs should be a whole number, not "three" '
        "(edited by hand? fix or delete it)\n"
    )
    assert not (tmp_path / "out.html").exists()


def test_a_path_that_holds_no_run_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])

    assert result.exit_code == 2
    assert result.stderr == (
        f"error {tmp_path} is not a run folder, a folder of runs or a sweep folder (a run "
        "folder holds run.json); name runs such as runs/<run> or sweeps/<sweep>\n"
    )


def test_the_run_page_inlines_figures_it_finds_whatever_their_name(
    runner: CliRunner, two_runs: Path, tmp_path: Path
) -> None:
    first, _ = copy_runs(two_runs, tmp_path)
    extra = (first / "plots" / "loss.png").read_bytes()
    (first / "plots" / "zz_extra.png").write_bytes(extra)
    out = tmp_path / "one.html"

    assert runner.invoke(app, ["report", str(first), "--out", str(out)]).exit_code == 0

    page = out.read_text(encoding="utf-8")
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert captions[:3] == ["loss.png", "accuracy.png", "f1.png"]
    assert captions[-1] == "zz_extra.png"
    assert page.count(base64.b64encode(extra).decode()) == 2
