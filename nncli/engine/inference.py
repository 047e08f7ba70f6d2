"""A model applied to data without gradients: whole splits into a meter, host arrays into
outputs or classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from nncli.engine.batches import DiskRows
from nncli.engine.meter import Meter
from nncli.engine.signals import raise_received

if TYPE_CHECKING:
    from nncli.engine.prepare import Prepared

EVAL_BATCH = 4096  # held-out splits are evaluated in chunks of at least this many samples


def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: nn.Module,
    x: torch.Tensor | DiskRows,
    y: torch.Tensor,
    meter: Meter,
    chunk: int,
) -> None:
    """Add a whole split to `meter`, in chunks, without gradients (model in eval mode). A
    Ctrl-C that training received and the code it landed in swallowed stops it at the next
    chunk (`raise_received`), as it stops fit at the next batch."""
    meter.reset()
    if isinstance(x, DiskRows):  # streamed: read chunk by chunk from the file
        for idx, xb in x.chunks(chunk):
            raise_received()  # a Ctrl-C that the code it landed in swallowed
            yb = y.index_select(0, idx)
            out = model(xb).float()
            meter.update(out, yb, loss_fn(out, yb), len(xb))
        return
    for lo in range(0, len(x), chunk):
        raise_received()
        xb, yb = x[lo : lo + chunk], y[lo : lo + chunk]
        out = model(xb).float()
        meter.update(out, yb, loss_fn(out, yb), len(xb))


def predict(p: Prepared, x: np.ndarray) -> np.ndarray:
    """Model outputs for host inputs (eval mode, in chunks), as a numpy array."""
    p.model.eval()
    outs = []
    with torch.no_grad():
        for lo in range(0, len(x), EVAL_BATCH):
            xb = torch.as_tensor(x[lo : lo + EVAL_BATCH], dtype=torch.float32, device=p.device)
            outs.append(p.model(xb).float().cpu())
    return torch.cat(outs).numpy()


def predict_classes(p: Prepared, x: np.ndarray) -> np.ndarray:
    """Class indices for host inputs (binary and multiclass tasks)."""
    out = predict(p, x)
    if p.task.kind == "multiclass":
        return np.asarray(out.argmax(axis=1), dtype=np.int64)
    return np.asarray(out.reshape(len(out)) > p.task.threshold, dtype=np.int64)
