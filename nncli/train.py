"""The training engine: prepare (everything that can fail on the user's input, before any
run folder exists) and fit (the epoch loop, top to bottom).

In-memory data lives on the device as tensors; each epoch draws a permutation and slices
batches from it; losses and metric counts stay on the device until the epoch ends, when
one host sync reads them all.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from nncli import data as datamod
from nncli.errors import NncliError
from nncli.losses import losses
from nncli.metrics import Meter
from nncli.model import build_model, count_parameters
from nncli.optim import optimizers
from nncli.runs import columns
from nncli.spec import Spec
from nncli.task import Task, infer_task

EVAL_BATCH = 4096  # held-out splits are evaluated in chunks of at least this many samples


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a named device must be present."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NncliError(
                f"train.device is '{name}' but this machine has no CUDA device (or this torch "
                "build has no CUDA support); use device: auto or cpu"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise NncliError(
                f"train.device is '{name}' but only {torch.cuda.device_count()} CUDA device(s) "
                f"exist (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise NncliError(
            "train.device is 'mps' but MPS (Apple GPU) is not available here; use auto or cpu"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Prepared:
    """A validated experiment, ready to train: data on the device, model, loss, optimizer."""

    spec: Spec
    device: torch.device
    dataset: datamod.Dataset
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    model: nn.Sequential
    shapes: list[tuple[int, ...]]
    task: Task
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    metrics: list[str] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        return count_parameters(self.model)

    @property
    def monitor(self) -> str:
        """The column whose best value picks best.pt: the first held-out split's loss."""
        held_out = [s for s in ("val", "test") if s in self.splits]
        return f"{held_out[0] if held_out else 'train'}_loss"

    def columns(self) -> list[str]:
        return columns(list(self.splits), self.metrics)


def _targets(y: np.ndarray, task: Task, device: torch.device) -> torch.Tensor:
    """Targets in the form the loss takes: class indices, or float rows shaped like the output."""
    if task.kind == "multiclass":
        return torch.as_tensor(y, dtype=torch.long, device=device)
    values = torch.as_tensor(y, dtype=torch.float32, device=device)
    return values.reshape(len(values), -1)


def prepare(spec: Spec, device: str | None = None) -> Prepared:
    """Device, data, model, loss and optimizer of `spec`; user mistakes raise NncliError."""
    dev = resolve_device(device or spec.train.device)
    seed_everything(spec.seed)

    # data: generated or read on the host, split, then moved to the device once
    dataset = datamod.load(spec.data, spec.seed)
    indices = datamod.split(dataset, spec.data.split, spec.seed)
    x_all = torch.as_tensor(dataset.x, dtype=torch.float32)

    # model: built layer by layer on a few real samples, so shapes are checked here
    torch.manual_seed(spec.seed)
    model, shapes = build_model(spec.model.layers, x_all[indices["train"][:2]].to(dev))
    info = spec.loss_info
    task = infer_task(dataset, spec.loss.name, info, shapes[-1])

    splits = {
        name: (x_all[idx].to(dev), _targets(dataset.y[idx], task, dev))
        for name, idx in indices.items()
    }
    loss_fn = losses.get(spec.loss.name).build(spec.loss).to(dev)
    optimizer = optimizers.get(spec.optimizer.name).build(spec.optimizer, model.parameters())
    return Prepared(
        spec, dev, dataset, splits, model, shapes, task, loss_fn, optimizer, spec.metric_names
    )


class Sink(Protocol):
    """Where fit reports: a run folder (rows, checkpoints) and the console (progress)."""

    def epoch_end(
        self, row: Mapping[str, float], improved: bool, state: Callable[[], dict[str, Any]]
    ) -> None: ...

    def batch_end(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None: ...


@dataclass
class FitResult:
    rows: list[dict[str, float]]
    meters: dict[str, Meter]
    best: float
    best_epoch: int


def fit(p: Prepared, sink: Sink, max_batches: int | None = None) -> FitResult:
    """Train `p.model` for `spec.train.epochs` epochs; one row per epoch goes to `sink`."""
    # set-up
    cfg = p.spec.train
    model, loss_fn, opt, dev = p.model, p.loss_fn, p.optimizer, p.device
    x, y = p.splits["train"]
    n = len(x)
    batch = min(cfg.batch_size, n)
    n_batches = -(-n // batch)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    order = torch.Generator().manual_seed(p.spec.seed)
    meters = {name: Meter(p.task, p.metrics, dev) for name in p.splits}
    monitor = p.monitor
    best, best_epoch = float("inf"), 0
    rows: list[dict[str, float]] = []

    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()

        # train: one pass over a fresh permutation, no host sync inside
        model.train()
        perm = torch.randperm(n, generator=order).to(dev) if cfg.shuffle else None
        train_meter = meters["train"]
        train_meter.reset()
        for i in range(n_batches):
            lo, hi = i * batch, min((i + 1) * batch, n)
            if perm is None:
                xb, yb = x[lo:hi], y[lo:hi]
            else:
                idx = perm[lo:hi]
                xb, yb = x[idx], y[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            train_meter.update(out.detach(), yb, loss.detach(), hi - lo)
            sink.batch_end(epoch, i, n_batches, loss)

        # evaluate the held-out splits
        model.eval()
        with torch.no_grad():
            for name, (xs, ys) in p.splits.items():
                if name != "train":
                    evaluate(model, loss_fn, xs, ys, meters[name], max(batch, EVAL_BATCH))

        # bookkeeping: one host sync for every split's totals, then one row
        values = torch.cat([m.totals() for m in meters.values()]).tolist()
        row: dict[str, float] = {"epoch": epoch}
        offset = 0
        for name, meter in meters.items():
            size = meter.totals().numel()
            for metric, value in meter.results(values[offset : offset + size]).items():
                row[f"{name}_{metric}"] = value
            offset += size
        row["lr"] = opt.param_groups[0]["lr"]
        row["time_s"] = time.perf_counter() - started
        rows.append(row)
        improved = row[monitor] < best
        if improved:
            best, best_epoch = row[monitor], epoch
        sink.epoch_end(row, improved, functools.partial(checkpoint, p, epoch))

    return FitResult(rows, meters, best, best_epoch)


def evaluate(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, meter: Meter, chunk: int
) -> None:
    """Add a whole split to `meter`, in chunks, without gradients (model in eval mode)."""
    meter.reset()
    for lo in range(0, len(x), chunk):
        xb, yb = x[lo : lo + chunk], y[lo : lo + chunk]
        out = model(xb)
        meter.update(out, yb, loss_fn(out, yb), len(xb))


def checkpoint(p: Prepared, epoch: int) -> dict[str, Any]:
    """What a checkpoint holds: plain tensors and numbers, loadable with weights_only=True."""
    return {
        "model": p.model.state_dict(),
        "optimizer": p.optimizer.state_dict(),
        "epoch": epoch,
        "monitor": p.monitor,
    }


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
