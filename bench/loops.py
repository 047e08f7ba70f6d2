"""The three training loops the benchmark times on the same tensors:

(a) tutorial: a DataLoader over a TensorDataset, `.item()` every batch (how most people
    write it, and how the PyTorch tutorials do);
(b) tight: tensors in memory, a per-epoch permutation, loss and accuracy summed on the
    device, one host sync per epoch (what an expert writes by hand);
(c) engine: nncli's own `fit` on the prepared experiment, with a sink that writes nothing.

Each loop trains one model for the workload's epochs and evaluates the held-out split
after every epoch, computing loss and accuracy for both; each returns its last epoch's
metrics, so a reader can see the three did the same work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nncli.engine.fit import fit
from nncli.engine.inference import EVAL_BATCH
from nncli.engine.prepare import Prepared

Split = tuple[torch.Tensor, torch.Tensor]


def _predict(out: torch.Tensor, binary: bool) -> torch.Tensor:
    return (out > 0.5).to(out.dtype) if binary else out.argmax(dim=1)


def tutorial(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    train: Split,
    test: Split | None,
    epochs: int,
    batch: int,
    binary: bool,
    max_batches: int | None = None,
) -> dict[str, float]:
    """(a) The tutorial loop: DataLoader batches, per-batch `.item()` for the running loss
    and accuracy, a test DataLoader of 1,000 (the PyTorch MNIST example's test batch)."""
    loader = DataLoader(TensorDataset(*train), batch_size=batch, shuffle=True)
    metrics: dict[str, float] = {}
    for _ in range(epochs):
        model.train()
        total, correct, seen = 0.0, 0, 0
        for i, (xb, yb) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            correct += (_predict(out, binary) == yb).sum().item()
            seen += len(xb)
        metrics = {"train_loss": total / seen, "train_accuracy": correct / seen}
        if test is not None:
            model.eval()
            total, correct, seen = 0.0, 0, 0
            with torch.no_grad():
                for xb, yb in DataLoader(TensorDataset(*test), batch_size=1000):
                    out = model(xb)
                    total += loss_fn(out, yb).item() * len(xb)
                    correct += (_predict(out, binary) == yb).sum().item()
                    seen += len(xb)
            metrics |= {"test_loss": total / seen, "test_accuracy": correct / seen}
    return metrics


def tight(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    train: Split,
    test: Split | None,
    epochs: int,
    batch: int,
    binary: bool,
    seed: int,
    bare: bool = False,
    max_batches: int | None = None,
) -> dict[str, float]:
    """(b) The tight loop: index slices of a per-epoch permutation, sums on the device,
    one `.tolist()` per epoch; the test split in chunks of EVAL_BATCH, like the engine.

    `bare` clears gradients by hand instead of `opt.zero_grad()` (which goes through
    torch's profiler and dynamo wrappers) and gathers batches with `index_select`: the
    cheapest loop we know how to write."""
    x, y = train
    n = len(x)
    dev = x.device
    order = torch.Generator().manual_seed(seed)
    params = [p for g in opt.param_groups for p in g["params"]]
    n_batches = -(-n // batch) if max_batches is None else max_batches
    metrics: dict[str, float] = {}
    for _ in range(epochs):
        model.train()
        sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss*n, correct (train, test)
        perm = torch.randperm(n, generator=order).to(dev)
        for i in range(n_batches):
            idx = perm[i * batch : (i + 1) * batch]
            if bare:  # x[idx] as index_select: the same rows, a third of the time
                xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            else:
                xb, yb = x[idx], y[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            if bare:
                for p in params:
                    p.grad = None
            else:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums[0] += loss.detach() * len(idx)
            sums[1] += (_predict(out.detach(), binary) == yb).sum()
        if test is not None:
            model.eval()
            with torch.no_grad():
                xt, yt = test
                chunk = max(batch, EVAL_BATCH)
                for lo in range(0, len(xt), chunk):
                    xb, yb = xt[lo : lo + chunk], yt[lo : lo + chunk]
                    out = model(xb)
                    sums[2] += loss_fn(out, yb) * len(xb)
                    sums[3] += (_predict(out, binary) == yb).sum()
        values = sums.tolist()  # the epoch's one host sync
        seen = min(n, n_batches * batch)
        metrics = {"train_loss": values[0] / seen, "train_accuracy": values[1] / seen}
        if test is not None:
            metrics |= {
                "test_loss": values[2] / len(test[0]),
                "test_accuracy": values[3] / len(test[0]),
            }
    return metrics


class NullSink:
    """fit's sink for timing: keeps the last row, writes nothing, takes no checkpoint."""

    def __init__(self) -> None:
        self.row: dict[str, float] = {}

    def epoch_end(self, row: Mapping[str, float], state: Any, last: bool, best: bool) -> None:
        self.row = dict(row)

    def batch_end(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def engine(p: Prepared, max_batches: int | None = None) -> dict[str, float]:
    """(c) nncli's engine: `fit` on a prepared experiment."""
    sink = NullSink()
    fit(p, sink, max_batches=max_batches)
    return {k: v for k, v in sink.row.items() if k.endswith(("loss", "accuracy"))}
