"""`nncli plot RUN`: a run's figures drawn again from its folder alone (config, metrics,
last checkpoint), on the cpu, with the same seed and so the same data and split."""

from __future__ import annotations

from pathlib import Path

import torch

from nncli.engine.experiment import write_plots
from nncli.engine.meter import Meter
from nncli.engine.train import FitResult, evaluate, prepare
from nncli.runs.folder import CONFIG, PLOTS, read_metrics
from nncli.trained.load import load_run, load_weights


def replot(run: Path, out: Path | None = None) -> list[Path]:
    """Write the run's figures to `out` (default: its plots/ folder); the paths written."""
    t = load_run(run, "last")  # every damaged part named before the data is read again
    info = t.info
    p = prepare(t.spec, "cpu")
    # the model of the data as it reads now: where that changed, the weights name the misfit
    load_weights(p.model, t.state["model"], t.checkpoint, run / CONFIG)

    # held-out splits as they stand with these weights; write_plots evaluates train itself
    meters = {name: Meter(p.task, p.metrics, p.device) for name in p.splits}
    p.model.eval()
    with torch.no_grad():
        for name, (x, y) in p.splits.items():
            if name != "train":
                evaluate(p.model, p.loss_fn, x, y, meters[name], len(x))
    rows = read_metrics(run)
    best_epoch = int(info.get("best_epoch") or len(rows))
    result = FitResult(rows=rows, meters=meters, best_epoch=best_epoch)
    return write_plots(out or run / PLOTS, p, result)
