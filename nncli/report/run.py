"""One run's report.html: its status, final and best metrics, figures, model summary,
every epoch's row and its config as written and resolved, read from the run folder alone
(so a run's own end, `nncli plot RUN` and `nncli report RUN` write the same page)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nncli.errors import NncliError, first_line
from nncli.report import html
from nncli.runs.files import CONFIG, PLOTS, REPORT, SPEC
from nncli.runs.folder import metric_name
from nncli.runs.record import read_run
from nncli.runs.rundata import RunData

MAX_FIGURE_BYTES = 20 * 1024 * 1024  # a picture nncli draws is well under 1 MB


def read(folder: Path) -> RunData:
    """The run's run.json (strictly checked), config.yaml and metrics.csv; NncliError
    naming the damaged file."""
    read_run(folder)  # run.json: every field of the right type, or the error naming it
    try:
        return RunData.read(folder)
    except NncliError as exc:  # `metrics.csv is truncated ...`: relative to the run
        raise NncliError(
            f"{folder}/{exc}; repair the file, or leave this run out of the report"
        ) from None


def run_body(run: RunData, heading: str = "h1") -> str:
    """The page's content for one run (used alone, or in a page of several runs)."""
    from nncli.trained.show import METRIC_COLUMNS, MODEL_COLUMNS, summarise

    info, folder = run.info, run.path
    status = run.status
    parts = [
        f"<{heading}>{html.text(info.name or folder.name)} "
        f'<span class="status {html.text(status.split()[0])}">{html.text(status)}</span>'
        f"</{heading}>",
        f'<p class="sub">{html.text(folder)}</p>',
    ]
    if info.error:
        parts.append(f'<div class="error">{html.text(info.error)}</div>')

    summary = summarise(folder)  # NncliError naming a damaged checkpoint or config
    scores = (
        html.table(summary.metrics, METRIC_COLUMNS)
        if summary.metrics
        else '<p class="sub">no epoch finished</p>'
    )
    parts.append(
        f'<div class="cols"><div>{html.facts(_facts(run))}</div>'
        f"<div>{html.section('Metrics: final and best', scores)}</div></div>"
    )
    parts.append(html.section("Figures", html.figures(_figures(folder, run.columns))))

    note = "" if summary.built else " (no checkpoint: output shapes unknown)"
    parts.append(
        html.section(
            "Model",
            html.table(summary.layer_table(), MODEL_COLUMNS, sortable=False)
            + f'<p class="sub">{summary.total:,} parameters{html.text(note)}</p>',
        )
    )

    columns = [
        "epoch",
        *run.columns,
        *(c for c in ("lr", "time_s") if run.rows and c in run.rows[0]),
    ]
    parts.append(
        html.section(
            "Metrics per epoch",
            f'<div class="scroll">{html.table(run.rows, columns)}</div>'
            if run.rows
            else '<p class="sub">metrics.csv has no rows</p>',
        )
    )
    parts.append(
        html.section(
            "Config",
            '<div class="cols">'
            f"<div><h3>as written ({SPEC})</h3>{html.pre(_text(folder / SPEC))}</div>"
            f"<div><h3>resolved ({CONFIG})</h3>{html.pre(_text(folder / CONFIG))}</div>"
            "</div>",
        )
    )
    return "".join(parts)


def run_page(folder: Path) -> str:
    """The whole report.html of one run; NncliError naming a damaged file."""
    run = read(folder)
    return html.page(f"{run.info.name or folder.name}: nncli run report", run_body(run))


def write_run_report(folder: Path, out: Path | None = None) -> Path:
    """Write the run's page to `out` (default: report.html in the run folder); its path."""
    return html.write_page(out or folder / REPORT, run_page(folder))


def _facts(run: RunData) -> list[tuple[str, Any]]:
    info = run.info
    epochs = None if info.epochs_done is None else f"{info.epochs_done} of {info.epochs}"
    checkpoint = info.best_checkpoint or {}
    best = None
    if checkpoint.get("epoch") is not None:
        value = checkpoint.get(info.monitor) if info.monitor else None
        shown = "" if value is None else f" ({info.monitor} {html.number(value)})"
        best = f"epoch {checkpoint['epoch']:g}{shown}"
    samples = info.samples and ", ".join(f"{k} {v}" for k, v in info.samples.items())
    versions = info.versions and ", ".join(f"{k} {v}" for k, v in info.versions.items())
    duration = None if info.duration_s is None else f"{info.duration_s:.1f} s"
    return [
        ("epochs", epochs),
        ("started", info.started_at),
        ("ended", info.ended_at),
        ("duration", duration),
        ("task", info.task),
        ("parameters", None if info.n_params is None else f"{info.n_params:,}"),
        ("samples", samples),
        ("device", info.device),
        ("seed", info.seed),
        ("monitor", info.monitor),
        ("best.pt", best),
        ("stopped early", "yes" if info.stopped_early else None),
        ("smoke run", "yes" if info.smoke else None),
        ("experiment file", info.spec_file),
        ("command", info.command and " ".join(info.command)),
        ("versions", versions),
        ("git commit", info.git_commit),
    ]


def _figures(folder: Path, columns: Sequence[str]) -> list[tuple[str, bytes]]:
    """Every PNG in plots/: the curves first (loss, then each metric), then the rest by
    name; a file too large or unreadable is left out."""
    plots = folder / PLOTS
    try:
        found = sorted(p for p in plots.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    except OSError:
        return []
    curves = dict.fromkeys(["loss", *(metric_name(c) for c in columns)])
    order = {f"{name}.png": i for i, name in enumerate(curves)}
    found.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    items = []
    for path in found:
        try:
            if path.stat().st_size <= MAX_FIGURE_BYTES:
                items.append((path.name, path.read_bytes()))
        except OSError:
            continue
    return items


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        return f"({path.name} cannot be read: {first_line(exc)})"
