"""The training engine: prepare (everything that can fail on the user's input, before any
run folder exists) and fit (the epoch loop, top to bottom).

In-memory data lives on the device as tensors; each epoch draws a permutation and slices
batches from it; losses and metric counts stay on the device until the epoch ends, when
one host sync reads them all.
"""

from __future__ import annotations

import functools
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from nncli import data as datamod
from nncli.config.spec import Spec
from nncli.engine import distributed
from nncli.engine.meter import Meter
from nncli.engine.model import build_model, count_parameters, describe
from nncli.engine.state import checkpoint, restore
from nncli.engine.task import Task, infer_task
from nncli.errors import NncliError, RunDiverged
from nncli.losses import losses
from nncli.optim import optimizers, schedulers
from nncli.runs.folder import columns, direction

EVAL_BATCH = 4096  # held-out splits are evaluated in chunks of at least this many samples
# A batch with fewer multiply-adds than this trains on one CPU thread: a second one cannot
# pay for its fork and join on ops this small (about 50 us of work), and on a busy machine
# each join waits for a descheduled thread (bench/: circles ran 10x slower with 2 threads).
ONE_THREAD_MACS = 1 << 20


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


def batch_macs(model: nn.Sequential, shapes: list[tuple[int, ...]], batch: int) -> int:
    """Multiply-adds of one batch's forward pass, roughly: each parameter of a layer is used
    once per position of its output (once for dense layers, once per pixel for convolutions)."""
    total = 0
    for layer, shape in zip(model, shapes, strict=True):
        positions = math.prod(shape[1:]) if len(shape) > 1 else 1
        total += sum(q.numel() for q in layer.parameters()) * positions
    return total * batch


def threads_for(p: Prepared) -> int | None:
    """The intra-op thread count to train `p` with: 1 for a small model on a CPU (see
    ONE_THREAD_MACS); None (torch's own setting) otherwise, or where OMP_NUM_THREADS says."""
    if p.device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return None
    small = batch_macs(p.model, p.shapes, p.spec.train.batch_size) < ONE_THREAD_MACS
    return 1 if small and torch.get_num_threads() > 1 else None


@contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """torch.set_num_threads(n) for the block (nothing when n is None), then back."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    scheduler: Any = None
    monitor: str = "train_loss"  # the column that picks best.pt, early stopping, plateaus
    mode: str = "min"
    rank: distributed.Rank = field(default_factory=distributed.Rank)

    @property
    def n_params(self) -> int:
        return count_parameters(self.model)

    @property
    def n_batches(self) -> int:
        """Batches per epoch (the last one may be smaller)."""
        n = len(self.splits["train"][0])
        return -(-n // min(self.spec.train.batch_size, n))

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
    rank = distributed.current()
    dev = resolve_device(device or spec.train.device)
    if rank.distributed and dev.type == "cuda":
        dev = torch.device("cuda", rank.local_rank)  # one GPU per process on its node
    distributed.init(rank, dev.type)
    seed_everything(spec.seed)

    # data: generated or read on the host, split, preprocessed with statistics of the train
    # split only, then moved to the device once
    dataset, indices = datamod.prepare(
        spec.data, spec.seed, spec.loss_info.target, spec.train.batch_size
    )
    x_all = torch.as_tensor(dataset.x, dtype=torch.float32)

    # model: built layer by layer on a few real samples, so shapes are checked here
    torch.manual_seed(spec.seed)
    sample = x_all[indices["train"][:2]].to(dev)
    try:
        model, shapes = build_model(spec.model.layers, sample)
    except (RuntimeError, MemoryError, OverflowError, TypeError, IndexError, ValueError) as exc:
        # what build_model does not name: a layer too large to allocate (RuntimeError, or
        # TypeError for a size past 64 bits) or a forward pass torch refuses with IndexError
        # (`log_softmax: {dim: 7}`); left as they are, they would read as bugs in nncli
        if isinstance(exc, TypeError) and "Overflow" not in str(exc):
            raise
        raise NncliError(_model_problem(spec, sample, exc)) from None
    if count_parameters(model) == 0:  # the optimizer would refuse it, as if nncli failed
        raise NncliError(
            "the model has no weights to train: model.layers holds no layer with parameters "
            "(dense, conv1d, conv2d, ...); add one, e.g. `- dense: 1`"
        )
    info = spec.loss_info
    task = infer_task(dataset, spec.loss.name, info, shapes[-1])

    splits = {
        name: (x_all[idx].to(dev), _targets(dataset.y[idx], task, dev))
        for name, idx in indices.items()
    }
    # the splits hold every row now: keep the dataset's layout without a second copy of
    # its rows (the whole data set on the host for the length of the run)
    del x_all
    dataset = replace(dataset, x=dataset.x[:0].copy(), y=dataset.y[:0].copy())
    loss_fn = losses.get(spec.loss.name).build(spec.loss).to(dev)
    _check_probabilities(spec, loss_fn)
    optimizer = optimizers.get(spec.optimizer.name).build(spec.optimizer, model.parameters())
    p = Prepared(
        spec, dev, dataset, splits, model, shapes, task, loss_fn, optimizer, spec.metric_names
    )
    p.monitor, p.mode = _monitor(spec, list(splits))
    p.rank = rank
    if rank.distributed:
        _check_shares(p)
    if spec.scheduler is not None:
        entry = schedulers.get(spec.scheduler.name)
        p.scheduler = entry.build(spec.scheduler, optimizer, spec.train.epochs, p.n_batches)
    return p


def _model_problem(spec: Spec, sample: torch.Tensor, exc: BaseException) -> str:
    """The message for a model that failed to build: the layer and its input shape, found
    by building ever longer prefixes of the stack (on the meta device, without memory,
    where the failure was an allocation)."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = str(exc)
    if isinstance(exc, MemoryError | OverflowError | TypeError) or "allocate" in text:
        return _too_large(spec, sample, reason)
    specs = spec.model.layers
    shape = tuple(sample.shape[1:])
    for i in range(len(specs)):
        try:
            _, shapes = build_model(specs[: i + 1], sample)
        except Exception:
            return f"model.layers.{i} ({describe(specs[i])}) cannot take input of shape {shape}: {reason}"
        shape = shapes[-1]
    return f"the model cannot be built: {reason}"  # pragma: no cover - it failed above


BOUNDED = ("sigmoid", "softmax", "step")  # layers whose outputs stay within 0..1
PASS_THROUGH = ("identity", "flatten")  # layers that leave the values as they are


def _check_probabilities(spec: Spec, loss_fn: nn.Module) -> None:
    """torch's BCELoss raises at the first output outside 0..1, mid-run, as if nncli failed:
    a model that does not end in a layer bounded to 0..1 is refused before it starts. (lint
    warns about such ends for every loss; for this one they are fatal, not just slow.)"""
    if not isinstance(loss_fn, nn.BCELoss):
        return
    types = [layer.type for layer in spec.model.layers]
    last = next(i for i in range(len(types) - 1, -1, -1) if types[i] not in PASS_THROUGH or i == 0)
    if types[last] not in BOUNDED:
        raise NncliError(
            f"loss '{spec.loss.name}' takes probabilities, and torch stops a run at the first "
            f"output outside 0..1; the model ends with {types[last]} (model.layers.{last}), "
            "whose outputs can leave that range (end the model with sigmoid, or use loss: "
            "bce_with_logits)"
        )


def _too_large(spec: Spec, sample: torch.Tensor, reason: str) -> str:
    """Which layer could not be allocated, found by building the model again on the meta
    device (shapes only, no memory)."""
    try:
        with torch.device("meta"):
            model, _ = build_model(spec.model.layers, sample.to("meta"))
    except Exception:  # sizes past what even shapes can hold: say what torch said
        return f"the model cannot be built: {reason}; is a layer in model.layers too large?"
    sizes = [count_parameters(m) for m in model]
    i = max(range(len(sizes)), key=sizes.__getitem__)
    return (
        f"model.layers.{i} ({describe(spec.model.layers[i])}) has {sizes[i]:,} parameters "
        f"({sizes[i] * 4 / 1e9:,.1f} GB as float32), more than this machine can allocate "
        f"({reason}); make it smaller"
    )


def _check_shares(p: Prepared) -> None:
    """Every process needs a share of every batch: the global batch must split evenly."""
    world, batch = p.rank.world, p.spec.train.batch_size
    n = len(p.splits["train"][0])
    if batch % world or 0 < n % batch < world:
        raise NncliError(
            f"train.batch_size {batch} (the global batch) does not split over {world} "
            f"processes for {n} training samples; use a multiple of {world}"
        )


def _monitor(spec: Spec, splits: list[str]) -> tuple[str, str]:
    """train.monitor (default: the first held-out split's loss) and its direction."""
    held_out = [s for s in ("val", "test") if s in splits]
    monitor = spec.train.monitor or f"{held_out[0] if held_out else 'train'}_loss"
    split = monitor.split("_", 1)[0]
    if split not in splits:
        raise NncliError(
            f"train.monitor is '{monitor}' but the data has no {split} split; "
            f"set data.split.{split} (e.g. 0.2) or monitor one of {', '.join(splits)}"
        )
    mode = spec.train.mode if spec.train.mode != "auto" else direction(monitor)
    return monitor, mode


class Sink(Protocol):
    """Where fit reports: a run folder (rows, checkpoints) and the console (progress)."""

    def epoch_end(
        self, row: Mapping[str, float], state: Callable[[], dict[str, Any]], last: bool, best: bool
    ) -> None:
        """Record a finished epoch; `state()` is its checkpoint, to be written as last.pt
        and/or best.pt as the flags say."""

    def batch_end(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None: ...

    def note(self, text: str) -> None:
        """A warning the user should see (e.g. torch.compile fell back)."""


@dataclass
class Tracker:
    """The monitored metric's best value, and early stopping's count of stale epochs."""

    mode: str
    best: float = math.inf
    best_epoch: int = 0
    stale: int = 0

    @property
    def value(self) -> float:
        """The best value as logged (undoing the sign flip of max mode)."""
        return self.best if self.mode == "min" else -self.best

    def update(self, value: float, epoch: int, min_delta: float) -> bool:
        """Record an epoch's value; True if it improved on the best by more than min_delta."""
        signed = value if self.mode == "min" else -value
        improved = math.isfinite(signed) and signed < self.best - min_delta
        if improved:
            self.best, self.best_epoch, self.stale = signed, epoch, 0
        else:
            self.stale += 1
        return improved


@dataclass
class FitResult:
    rows: list[dict[str, float]]
    meters: dict[str, Meter]
    best_epoch: int  # the epoch best.pt holds
    best_value: float = math.nan  # its monitored value
    stopped_early: bool = False


def fit(
    p: Prepared,
    sink: Sink,
    max_batches: int | None = None,
    resume: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train `p.model` up to `spec.train.epochs`; one row per epoch goes to `sink`.

    `resume` is a checkpoint (see `checkpoint`): training continues after its epoch with
    every random state restored, so the result equals an uninterrupted run.
    """
    with intra_op_threads(threads_for(p)):
        return _fit(p, sink, max_batches, resume)


def _fit(
    p: Prepared,
    sink: Sink,
    max_batches: int | None,
    resume: Mapping[str, Any] | None,
) -> FitResult:
    # set-up
    cfg = p.spec.train
    model, loss_fn, opt, dev, sched = p.model, p.loss_fn, p.optimizer, p.device, p.scheduler
    x, y = p.splits["train"]
    n = len(x)
    batch = min(cfg.batch_size, n)
    n_batches = p.n_batches if max_batches is None else min(p.n_batches, max_batches)
    order = torch.Generator().manual_seed(p.spec.seed)
    meters = {name: Meter(p.task, p.metrics, dev) for name in p.splits}
    tracker = Tracker(p.mode)
    min_delta = cfg.early_stopping.min_delta if cfg.early_stopping else 0.0
    best_weights: dict[str, torch.Tensor] | None = None
    rows: list[dict[str, float]] = []
    start = 1
    if resume is not None:
        start = restore(p, resume, order, tracker) + 1
    forward = compiled(model, x[:2], sink) if cfg.compile else model
    plain = forward  # evaluation needs no gradient averaging
    rank, world = p.rank.rank, p.rank.world
    if p.rank.distributed:  # gradients are averaged over ranks inside backward
        devices = [dev] if dev.type == "cuda" else None
        forward = nn.parallel.DistributedDataParallel(model, device_ids=devices)
    autocast = (
        torch.autocast(dev.type, dtype=_DTYPES[cfg.precision])
        if cfg.precision != "fp32"
        else nullcontext()  # entering a disabled autocast still costs a few us a batch
    )
    scaler = torch.amp.GradScaler(enabled=cfg.precision == "fp16" and dev.type == "cuda")
    step_on = schedulers.get(p.spec.scheduler.name).info.step if p.spec.scheduler else None
    per_batch = step_on == "batch"
    batch_losses = torch.zeros(n_batches, device=dev)  # to name the batch that diverged
    params = [q for group in opt.param_groups for q in group["params"]]

    for epoch in range(start, cfg.epochs + 1):
        started = time.perf_counter()

        # train: one pass over a fresh permutation, no host sync inside
        model.train()
        perm = torch.randperm(n, generator=order).to(dev) if cfg.shuffle else None
        train_meter = meters["train"]
        train_meter.reset()
        for i in range(n_batches):
            lo, hi = i * batch, min((i + 1) * batch, n)
            if perm is None:
                xb, yb = x[lo + rank : hi : world], y[lo + rank : hi : world]
            else:
                idx = perm[lo + rank : hi : world]  # this rank's share of the global batch
                xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # x[idx], 3x faster
            with autocast:
                out = forward(xb)
            try:
                loss = loss_fn(out.float(), yb)
            except RuntimeError:  # e.g. BCELoss refuses NaN probabilities
                if bool(torch.isfinite(out).all()):
                    raise
                raise RunDiverged(epoch, i + 1, n_batches, opt.param_groups[0]["lr"]) from None
            for q in params:  # opt.zero_grad(set_to_none=True) without its wrappers
                q.grad = None
            scaler.scale(loss).backward()
            if cfg.clip_grad_norm or cfg.clip_grad_value:
                scaler.unscale_(opt)
                if cfg.clip_grad_norm:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
                if cfg.clip_grad_value:
                    nn.utils.clip_grad_value_(model.parameters(), cfg.clip_grad_value)
            scaler.step(opt)
            scaler.update()
            if per_batch:
                sched.step()
            done = loss.detach()
            batch_losses[i] = done
            train_meter.update(out.detach().float(), yb, done, len(yb))
            sink.batch_end(epoch, i, n_batches, loss)

        # evaluate the held-out splits
        model.eval()
        with torch.no_grad(), autocast:
            for name, (xs, ys) in p.splits.items():
                if name != "train":  # each rank evaluates its share; totals are summed
                    share = slice(rank, None, world)
                    evaluate(
                        plain, loss_fn, xs[share], ys[share], meters[name], max(batch, EVAL_BATCH)
                    )

        # bookkeeping: one host sync (and one all-reduce) for every split's totals, one row
        values = distributed.all_sum(torch.cat([m.totals() for m in meters.values()])).tolist()
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

        # a non-finite loss stops the run; its weights are never saved
        if not math.isfinite(row["train_loss"]):
            sink.epoch_end(row, dict, last=False, best=False)
            bad = int(torch.nonzero(~torch.isfinite(batch_losses[:n_batches]))[0])
            raise RunDiverged(epoch, bad + 1, n_batches, row["lr"])

        improved = tracker.update(row[p.monitor], epoch, min_delta)
        if improved and cfg.early_stopping and cfg.early_stopping.restore_best:
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step_on == "metric":
            sched.step(row[p.monitor] if p.mode == "min" else -row[p.monitor])
        elif step_on == "epoch":
            sched.step()
        stop = cfg.early_stopping is not None and tracker.stale >= cfg.early_stopping.patience
        if stop and best_weights is not None:
            model.load_state_dict(best_weights)
        due = epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs or stop
        state = functools.partial(checkpoint, p, epoch, order, tracker)
        sink.epoch_end(row, state, last=due, best=improved)
        if stop:
            return FitResult(rows, meters, tracker.best_epoch, tracker.value, stopped_early=True)

    return FitResult(rows, meters, tracker.best_epoch, tracker.value)


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compiled(
    model: nn.Module, sample: torch.Tensor, sink: Sink
) -> Callable[[torch.Tensor], torch.Tensor]:
    """torch.compile(model), tried on one batch; the model itself where compiling fails."""
    try:
        fast: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model)
        with torch.no_grad():
            fast(sample)
    except Exception as exc:  # torch.compile fails in many backend-specific ways
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sink.note(f"torch.compile is not available here ({reason}); training without it")
        return model
    return fast


def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    meter: Meter,
    chunk: int,
) -> None:
    """Add a whole split to `meter`, in chunks, without gradients (model in eval mode)."""
    meter.reset()
    for lo in range(0, len(x), chunk):
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
