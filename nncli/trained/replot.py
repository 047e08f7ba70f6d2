"""`nncli plot RUN`: a run's figures drawn again from its folder alone (config, metrics,
last checkpoint), on the cpu, with the same seed and so the same data and split."""

from __future__ import annotations

from pathlib import Path

import torch

from nncli.engine.fit import FitResult
from nncli.engine.inference import evaluate
from nncli.engine.meter import Meter
from nncli.engine.prepare import prepare
from nncli.engine.run_figures import write_plots
from nncli.engine.state import load_weights, trained_weights
from nncli.report.run import write_run_report
from nncli.runs.files import CONFIG, PLOTS
from nncli.runs.record import RunInfo, read_metrics
from nncli.trained.load import load_run


def replot(run: Path, out: Path | None = None) -> list[Path]:
    """Write the run's figures to `out`, or to its plots/ folder and then its report.html;
    the paths written."""
    t = load_run(run, "last")  # every damaged part named before the data is read again
    rows = read_metrics(run)  # the curves' rows: missing or unreadable is an error too
    p = prepare(t.spec, "cpu")
    # the model of the data as it reads now: where that changed, the weights name the misfit
    load_weights(p.model, trained_weights(t.state), t.checkpoint, run / CONFIG)

    # held-out splits as they stand with these weights; write_plots evaluates train itself
    meters = {name: Meter(p.task, p.metrics, p.device) for name in p.splits}
    p.model.eval()
    with torch.no_grad():
        for name, (x, y) in p.splits.items():
            if name != "train":
                evaluate(p.model, p.loss_fn, x, y, meters[name], len(x))
    result = FitResult(rows=rows, meters=meters, best_epoch=best_epoch(t.info, len(rows)))
    if out is not None:
        return write_plots(out, p, result)
    written = write_plots(run / PLOTS, p, result)
    return [*written, write_run_report(run)]  # the page shows the figures just drawn


def best_epoch(info: RunInfo, epochs: int) -> int:
    """The epoch best.pt holds, as run.json's `best_checkpoint` records it; `epochs` (the
    last) where it records none (a run that did not finish)."""
    epoch = (info.best_checkpoint or {}).get("epoch")
    return int(epoch) if epoch is not None and float(epoch).is_integer() else epochs
