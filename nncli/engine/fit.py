"""The fit loop, top to bottom: one pass over a seeded permutation per epoch, the
held-out splits evaluated, one host sync for the epoch's row, then the sink records it.

In-memory data lives on the device as tensors; each epoch slices batches from a
permutation; losses and metric counts stay on the device until the epoch ends."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from nncli.config.spec import TrainSpec
from nncli.engine import distributed
from nncli.engine.batches import DiskRows
from nncli.engine.devices import intra_op_threads, threads_for
from nncli.engine.inference import EVAL_BATCH, evaluate
from nncli.engine.meter import Meter
from nncli.engine.prepare import Prepared
from nncli.engine.signals import raise_received
from nncli.engine.state import checkpoint, non_finite, restore
from nncli.errors import RunDiverged, first_line
from nncli.optim import schedulers


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
    """The monitored metric's best value, and early stopping's count of stale epochs;
    with early_stopping.restore_best, the best epoch's weights (checkpointed with the rest,
    so a resumed run ends with the same weights)."""

    mode: str
    best: float = math.inf
    best_epoch: int = 0
    stale: int = 0
    weights: dict[str, torch.Tensor] | None = None

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
    train_x, y = p.splits["train"]
    disk = train_x if isinstance(train_x, DiskRows) else None  # streamed: read from the file
    x = cast(torch.Tensor, train_x)  # sliced only where the data is in memory (disk is None)
    n = len(x)
    batch = min(cfg.batch_size, n)
    n_batches = p.n_batches if max_batches is None else min(p.n_batches, max_batches)
    order = torch.Generator().manual_seed(p.spec.seed)
    meters = {name: Meter(p.task, p.metrics, dev) for name in p.splits}
    tracker = Tracker(p.mode)
    stopping = cfg.early_stopping
    min_delta = stopping.min_delta if stopping else 0.0
    rows: list[dict[str, float]] = []
    start = 1
    ema = averaged(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    if resume is not None:
        start = restore(p, resume, order, tracker, ema) + 1
        if stopping is not None and tracker.stale >= stopping.patience:
            # killed after it stopped (e.g. while drawing the figures): nothing left to train
            return FitResult(rows, meters, tracker.best_epoch, tracker.value, stopped_early=True)
    forward = (
        compiled(model, x[:2] if disk is None else disk.head(2), sink) if cfg.compile else model
    )
    # evaluation needs no gradient averaging; with EMA it uses the averaged weights
    plain = forward if ema is None else ema.module
    rank, world = p.rank.rank, p.rank.world
    held_out = [(name, split) for name, split in p.splits.items() if name != "train"]
    share, eval_batch = slice(rank, None, world), max(batch, EVAL_BATCH)
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
    accumulate = cfg.accumulate_batches
    augment = p.augment  # data.augment: train batches only

    for epoch in range(start, cfg.epochs + 1):
        started = time.perf_counter()

        # train: one pass over a fresh permutation, no host sync inside
        model.train()
        if not cfg.shuffle:
            perm = None
        elif disk is not None:  # streamed: chunks of adjacent rows by default (data.shuffle)
            perm = disk.permutation(order)
        else:
            perm = torch.randperm(n, generator=order).to(dev)
        read = disk.epoch(perm, batch, n_batches, rank, world) if disk is not None else None
        train_meter = meters["train"]
        train_meter.reset()
        for i in range(n_batches):
            raise_received()  # a Ctrl-C that the code it landed in swallowed
            lo, hi = i * batch, min((i + 1) * batch, n)
            if read is not None:  # the same rows as below, read from disk ahead of use
                idx, xb = next(read)
                yb = y.index_select(0, idx)
            elif perm is None:
                xb, yb = x[lo + rank : hi : world], y[lo + rank : hi : world]
            else:
                idx = perm[lo + rank : hi : world]  # this rank's share of the global batch
                xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # x[idx], 3x faster
            target = yb
            if augment is not None:  # mixes give soft targets; metrics count yb, own labels
                xb, target = augment(xb, yb)
            with autocast:
                out = forward(xb)
            try:
                loss = loss_fn(out.float(), target)
            except RuntimeError:  # e.g. BCELoss refuses NaN probabilities
                if bool(torch.isfinite(out).all()):
                    raise
                raise RunDiverged(epoch, i + 1, n_batches, opt.param_groups[0]["lr"]) from None
            if i % accumulate == 0:  # opt.zero_grad(set_to_none=True) without its wrappers
                for q in params:
                    q.grad = None
            # a step takes the mean of its group's gradients (the epoch's last group may
            # hold fewer batches)
            group = min(accumulate, n_batches - i // accumulate * accumulate)
            scaler.scale(loss / group if group > 1 else loss).backward()
            if (i + 1) % accumulate == 0 or i + 1 == n_batches:
                step(opt, scaler, model, cfg)
                if ema is not None:
                    ema.update_parameters(model)
                if per_batch:
                    sched.step()
            done = loss.detach()
            batch_losses[i] = done
            train_meter.update(out.detach().float(), yb, done, len(yb))
            sink.batch_end(epoch, i, n_batches, loss)
        # a step can break the weights while its loss was finite: counted on the device,
        # read with the epoch's totals (no sync of its own)
        broken = non_finite(model, opt)

        # evaluate the held-out splits
        model.eval()
        if ema is not None:
            ema.eval()
        try:
            with torch.no_grad(), autocast:
                for name, (xs, ys) in held_out:  # each rank its share; totals are summed
                    evaluate(plain, loss_fn, xs[share], ys[share], meters[name], eval_batch)
        except RuntimeError:  # e.g. BCELoss refuses the NaN probabilities of broken weights
            if not bool(broken):
                raise
            lr = opt.param_groups[0]["lr"]
            raise RunDiverged(epoch, n_batches, n_batches, lr, weights=True) from None
        raise_received()  # one swallowed as a split's reader ended its workers (the last epoch too)

        # bookkeeping: one host sync (and one all-reduce) for every split's totals and the
        # count of non-finite weights, one row
        parts = [m.totals() for m in meters.values()]
        totals = torch.cat([*parts, broken.to(parts[0].dtype).view(1)])
        *values, n_broken = distributed.all_sum(totals).tolist()
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
        # nor are weights or optimizer state that a step made non-finite
        if n_broken:
            sink.epoch_end(row, dict, last=False, best=False)
            raise RunDiverged(epoch, n_batches, n_batches, row["lr"], weights=True)

        improved = tracker.update(row[p.monitor], epoch, min_delta)
        if improved and stopping and stopping.restore_best:
            tracker.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step_on == "metric":
            sched.step(row[p.monitor] if p.mode == "min" else -row[p.monitor])
        elif step_on == "epoch":
            sched.step()
        stop = stopping is not None and tracker.stale >= stopping.patience
        if stop and tracker.weights is not None:
            model.load_state_dict(tracker.weights)
        due = epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs or stop
        state = functools.partial(checkpoint, p, epoch, order, tracker, ema)
        sink.epoch_end(row, state, last=due, best=improved)
        if stop:
            return FitResult(rows, meters, tracker.best_epoch, tracker.value, stopped_early=True)

    return FitResult(rows, meters, tracker.best_epoch, tracker.value)


def averaged(model: nn.Module, decay: float) -> AveragedModel:
    """torch's exponential moving average of the model's weights and buffers."""
    ema = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]
    return AveragedModel(model, multi_avg_fn=ema, use_buffers=True)


def step(
    opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, model: nn.Module, cfg: TrainSpec
) -> None:
    """One optimizer step on the gradients gathered so far, clipped as train says."""
    if cfg.clip_grad_norm or cfg.clip_grad_value:
        scaler.unscale_(opt)
        if cfg.clip_grad_norm:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        if cfg.clip_grad_value:
            nn.utils.clip_grad_value_(model.parameters(), cfg.clip_grad_value)
    scaler.step(opt)
    scaler.update()


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
        reason = first_line(exc)
        sink.note(f"torch.compile is not available here ({reason}); training without it")
        return model
    return fast
