"""Prepare: everything that can fail on the user's input, before any run folder exists:
the device, the data on it, the model built on real samples, the loss and optimizer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from nncli import data as datamod
from nncli.config.spec import Spec
from nncli.data.npy import on_disk
from nncli.engine import distributed
from nncli.engine.augment import Augment, build
from nncli.engine.batches import DiskRows
from nncli.engine.devices import resolve_device, seed_everything
from nncli.engine.model import build_model, count_parameters, describe, with_vocabulary
from nncli.engine.task import Task, infer_task, output_layer
from nncli.errors import NncliError, first_line
from nncli.layers import info as layer_info
from nncli.losses import balanced, losses
from nncli.metrics import direction
from nncli.modules import Embedding
from nncli.optim import optimizers, schedulers
from nncli.runs.folder import columns


@dataclass
class Prepared:
    """A validated experiment, ready to train: data on the device, model, loss, optimizer."""

    spec: Spec
    device: torch.device
    dataset: datamod.Dataset
    splits: dict[str, tuple[torch.Tensor | DiskRows, torch.Tensor]]  # DiskRows: streamed
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
    augment: Augment | None = None  # data.augment, applied to training batches only

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


def _first(dataset: datamod.Dataset, rows: np.ndarray) -> torch.Tensor:
    """Streamed inputs: the model inputs of these rows, read from the file."""
    assert dataset.preprocessing is not None
    disk = DiskRows.of(dataset.x, rows, dataset.preprocessing, torch.device("cpu"), 0)
    return disk.read(np.arange(len(rows)))


def _streamed(spec: Spec, dataset: datamod.Dataset, idx: np.ndarray, dev: torch.device) -> DiskRows:
    assert dataset.preprocessing is not None
    workers = int(getattr(spec.data, "workers", 0))
    shuffle = str(getattr(spec.data, "shuffle", "rows"))
    return DiskRows.of(dataset.x, idx, dataset.preprocessing, dev, workers, shuffle)


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
    disk = on_disk(dataset.x)  # data.stream: the inputs stay in their file
    x_all = None if disk else torch.as_tensor(dataset.x, dtype=torch.float32)
    first = _first(dataset, indices["train"][:2]) if x_all is None else x_all[indices["train"][:2]]
    layer = spec.model.layers[0]
    if disk and layer.type == "embedding" and getattr(layer, "vocab", None) is None:
        raise NncliError(
            "embedding: its vocab is inferred from every row's ids, but these inputs are "
            "streamed from disk and not read up front; give vocab: (the largest id + 1)",
            key="model.layers.0",
        )
    spec = with_vocabulary(spec, first if x_all is None else x_all)  # an embedding's vocab

    # model: built layer by layer on a few real samples, so shapes are checked here
    torch.manual_seed(spec.seed)
    sample = first.to(dev)
    try:
        model, shapes = build_model(spec.model, sample)
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
            "(dense, conv1d, conv2d, ...); add one, e.g. `- dense: 1`",
            key="model.layers",
        )
    _check_batch_of_one(spec, model, sample, len(indices["train"]))
    if x_all is not None and isinstance(model[0], Embedding):  # every row's ids checked
        model[0].data_checked = True
    info = spec.loss_info
    at = output_layer([layer.type for layer in spec.model.layers])
    task = infer_task(dataset, spec.loss.name, info, shapes[-1], at)

    # each split's rows: streamed from their file, or in memory as views of the data
    # rearranged in place where it is large, so that the host holds it once (the splits'
    # tensors on the CPU are those views)
    del x_all
    rows = None if disk else datamod.take_splits(dataset.x, indices)
    splits = {
        name: (
            _streamed(spec, dataset, idx, dev)
            if rows is None
            else torch.from_numpy(rows[name]).to(dev),
            _targets(dataset.y[idx], task, dev),
        )
        for name, idx in indices.items()
    }
    del rows
    # keep the dataset's layout without its rows (the splits hold them)
    dataset = replace(dataset, x=dataset.x[:0].copy(), y=dataset.y[:0].copy())
    loss_fn, weight = _loss(spec, task, splits["train"][1])
    loss_fn = loss_fn.to(dev)
    if weight is not None and dataset.preprocessing is not None:  # eval's loss uses them
        kept = dataset.preprocessing.model_copy(update={"loss_weight": weight})
        dataset = replace(dataset, preprocessing=kept)
    _check_probabilities(spec, loss_fn)
    optimizer = optimizers.get(spec.optimizer.name).build(spec.optimizer, model.parameters())
    p = Prepared(
        spec, dev, dataset, splits, model, shapes, task, loss_fn, optimizer, spec.metric_names
    )
    p.monitor, p.mode = _monitor(spec, list(splits))
    p.rank = rank
    shape = tuple(sample.shape[1:])
    p.augment = build(spec.data.augment, shape, spec.loss.name, task.n_outputs, dev)
    if rank.distributed:
        _check_shares(p)
    if spec.scheduler is not None:
        entry = schedulers.get(spec.scheduler.name)
        steps = -(-p.n_batches // spec.train.accumulate_batches)  # optimizer steps an epoch
        p.scheduler = entry.build(spec.scheduler, optimizer, spec.train.epochs, steps)
    return p


def _loss(spec: Spec, task: Task, y_train: torch.Tensor) -> tuple[nn.Module, list[float] | None]:
    """The loss, its class weights (`loss.weight`) checked against the model's classes, or
    computed from the train split's counts where `balanced` (and then returned too)."""
    params, weight = spec.loss, getattr(spec.loss, "weight", None)
    n = task.n_outputs
    computed = None
    if weight == "balanced":
        computed = balanced(spec.loss_info.target, y_train.cpu(), n)
        params = params.model_copy(update={"weight": computed})
    elif isinstance(weight, list) and len(weight) != n:
        what = "classes" if spec.loss_info.target == "index" else "outputs (one per label)"
        raise NncliError(
            f"loss.weight has {len(weight)} values, but the model has {n} {what}; give "
            f"one weight per class ({n} values), or weight: balanced to compute them from "
            "the train split"
        )
    return losses.get(spec.loss.name).build(params), computed


def _model_problem(spec: Spec, sample: torch.Tensor, exc: BaseException) -> str:
    """The message for a model that failed to build: the layer and its input shape, found
    by building ever longer prefixes of the stack (on the meta device, without memory,
    where the failure was an allocation)."""
    reason = first_line(exc)
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


def _check_probabilities(spec: Spec, loss_fn: nn.Module) -> None:
    """torch's BCELoss raises at the first output outside 0..1, mid-run, as if nncli failed:
    a model that does not end in a layer bounded to 0..1 is refused before it starts. (lint
    warns about such ends for every loss; for this one they are fatal, not just slow.)"""
    if not isinstance(loss_fn, nn.BCELoss):
        return
    types = [layer.type for layer in spec.model.layers]
    # the last layer that changes the values (identity and flatten leave them as they are)
    last = next(
        i
        for i in range(len(types) - 1, -1, -1)
        if layer_info(types[i]).passes != "values" or i == 0
    )
    if not layer_info(types[last]).probabilities:
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
    except Exception:  # sizes past what even shapes can hold: the first layer that fails
        specs = spec.model.layers
        for i in range(len(specs)):
            try:
                with torch.device("meta"):
                    build_model(specs[: i + 1], sample.to("meta"))
            except Exception:
                return (
                    f"model.layers.{i} ({describe(specs[i])}) is too large to build, even "
                    f"without memory ({reason}); make it smaller"
                )
        return f"the model cannot be built: {reason}; is a layer in model.layers too large?"
    sizes = [count_parameters(m) for m in model]
    i = max(range(len(sizes)), key=sizes.__getitem__)
    return (
        f"model.layers.{i} ({describe(spec.model.layers[i])}) has {sizes[i]:,} parameters "
        f"({sizes[i] * 4 / 1e9:,.1f} GB as float32), more than this machine can allocate "
        f"({reason}); make it smaller"
    )


def _check_batch_of_one(spec: Spec, model: nn.Sequential, sample: torch.Tensor, n: int) -> None:
    """Batch normalisation cannot train on a batch of one sample (torch stops the run mid-
    epoch): where the train split leaves one, the experiment is refused (rather than the
    sample dropped or merged, which would train on other batches than the file says). Layers
    inside residuals, branches and blocks count, and are named by their path."""
    from nncli.engine.model import built_layers

    batch = spec.train.batch_size
    if not (n == 1 or batch == 1 or (batch < n and n % batch == 1)):
        return
    if not any(layer_info(s.type).normalisation for _, s, _ in built_layers(*_stack(spec, model))):
        return
    import copy

    trial = copy.deepcopy(model).train()
    entered: list[str] = []  # the innermost layer running when torch refuses: the last entered
    hooks = [
        module.register_forward_pre_hook(lambda *_, name=f"{name} ({s.type})": entered.append(name))
        for name, s, module in built_layers(*_stack(spec, trial))
    ]
    try:
        with torch.no_grad():
            trial(sample[:1])
    except ValueError as exc:
        fix = next(b for b in range(batch + 1, n + 2) if b >= n or n % b != 1)
        raise NncliError(
            f"train.batch_size {batch} leaves a batch of one sample of the {n} in the "
            f"train split, and {entered[-1]} cannot train on one sample ({first_line(exc)}); "
            f"use train.batch_size {fix}, or change the split so that no batch holds a "
            "single sample"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()


def _stack(spec: Spec, model: nn.Sequential) -> tuple[Any, list[nn.Module], tuple[str, str]]:
    """built_layers' arguments for the whole model."""
    return spec.model.layers, list(model), ("model", "layers")


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
    """train.monitor and its direction; default: the val split's loss, else the train loss.
    The test split never chooses anything (best.pt, when to stop, plateaus): what it scores
    stays an honest estimate of new data."""
    monitor = spec.train.monitor or ("val_loss" if "val" in splits else "train_loss")
    split, metric = monitor.split("_", 1)
    if split == "test":
        raise NncliError(
            f"train.monitor is '{monitor}', but the test split must not choose best.pt, when "
            "to stop early or when to lower the learning rate: its scores would then flatter "
            f"the model. Monitor val_{metric} (with data.split.val, e.g. 0.2) or train_{metric}"
        )
    if split not in splits:
        raise NncliError(
            f"train.monitor is '{monitor}' but the data has no {split} split; "
            f"set data.split.{split} (e.g. 0.2) or monitor one of {', '.join(splits)}"
        )
    mode = spec.train.mode if spec.train.mode != "auto" else direction(monitor)
    return monitor, mode
