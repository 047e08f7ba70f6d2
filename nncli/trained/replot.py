"""`nncli plot RUN`: a run's figures drawn again from its folder alone (config, metrics,
last checkpoint), on the cpu, with the same seed and so the same data and split."""

from __future__ import annotations

from pathlib import Path

import torch

from nncli.config.spec import load_spec
from nncli.engine.experiment import write_plots
from nncli.engine.meter import Meter
from nncli.engine.state import load_checkpoint
from nncli.engine.train import FitResult, evaluate, prepare
from nncli.errors import NncliError
from nncli.runs.files import CHECKPOINTS, CONFIG, LAST, PLOTS
from nncli.runs.record import read_info, read_metrics


def replot(run: Path, out: Path | None = None) -> list[Path]:
    """Write the run's figures to `out` (default: its plots/ folder); the paths written."""
    info = read_info(run)  # NncliError unless `run` is a run folder
    spec = load_spec(run / CONFIG)
    state = load_checkpoint(run / CHECKPOINTS / LAST)
    p = prepare(spec, "cpu")
    try:
        p.model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0]
        raise NncliError(
            f"{run / CHECKPOINTS / LAST} does not fit the model of {run / CONFIG} "
            f"(was config.yaml edited?): {first}"
        ) from None

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
