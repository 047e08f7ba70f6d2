"""`nncli report RUN...`: one page for several runs (compare's table, the config keys that
differ and those that do not, an overlay figure per metric), or one run's page."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from nncli.errors import NncliError
from nncli.report import html
from nncli.report.run import read, run_page
from nncli.runs.compare import compare, text
from nncli.runs.rundata import find_runs
from nncli.sweep.state import RUNS, SWEEP_JSON


def expand(paths: Sequence[Path]) -> list[Path]:
    """The run folders named by `paths`: run folders, folders of runs and sweep folders
    (their runs/); NncliError for a path that is none of them, or when none is given."""
    wanted = [p / RUNS if (p / SWEEP_JSON).is_file() else p for p in paths]
    found, skipped = find_runs(wanted)
    if skipped:
        raise NncliError(
            f"{skipped[0]} is not a run folder, a folder of runs or a sweep folder "
            "(a run folder holds run.json); name runs such as runs/<run> or sweeps/<sweep>"
        )
    if not found:
        raise NncliError("no run folder given; name runs such as runs/<run> or runs/")
    return found


def several_page(runs: Sequence[Path]) -> str:
    """The page of several run folders; NncliError naming the first damaged file."""
    for run in runs:
        read(run)  # compare leaves a damaged run out; a report names it instead
    comparison = compare(runs, smoke=True)
    parts = [f"<h1>{len(comparison.runs)} runs</h1>"]
    parts += [f'<p class="warning">{html.text(w)}</p>' for w in comparison.warnings]
    rows = comparison.text_rows()
    for row, raw in zip(rows, comparison.rows, strict=True):  # numbers sort as numbers
        row["duration_s"] = raw.get("duration_s")
    table = html.table(rows, comparison.table_columns)
    parts.append(html.section("Comparison", f'<div class="scroll">{table}</div>'))
    differing = ", ".join(comparison.differing) or "none: the runs share every config key"
    same = "\n".join(f"{k}: {text(v)}" for k, v in comparison.same.items())
    parts.append(
        html.section(
            "Config",
            f"<p><b>differing keys</b>: {html.text(differing)}</p>"
            f"<details><summary>the same in every run ({len(comparison.same)} keys)</summary>"
            f"{html.pre(same)}</details>",
        )
    )
    from nncli.figures.overlays import plot_overlays

    with tempfile.TemporaryDirectory(prefix="nncli-report-") as folder:
        drawn = plot_overlays(comparison, Path(folder))
        overlays = [(p.name, p.read_bytes()) for p in drawn]
    parts.append(html.section("Curves", html.figures(overlays)))
    return html.page(f"nncli report: {len(comparison.runs)} runs", "".join(parts))


def write_report(paths: Sequence[Path], out: Path) -> Path:
    """The page of the runs under `paths` (one run: its own page) written to `out`."""
    runs = expand(paths)
    page = run_page(runs[0]) if len(runs) == 1 else several_page(runs)
    return html.write_page(out, page)
