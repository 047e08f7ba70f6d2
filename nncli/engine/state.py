"""A run's training state on disk: checkpoints written atomically, verified and loaded
(the one place nncli calls torch.load), and the state a resumed run continues from."""

from __future__ import annotations

import io
import math
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nncli.config.spec import resolved
from nncli.errors import NncliError, first_line
from nncli.runs.files import write_bytes_atomic, write_failed

if TYPE_CHECKING:
    from torch.optim.swa_utils import AveragedModel

    from nncli.engine.fit import Tracker
    from nncli.engine.prepare import Prepared


def checkpoint(
    p: Prepared,
    epoch: int,
    order: torch.Generator,
    tracker: Tracker,
    ema: AveragedModel | None = None,
) -> dict[str, Any]:
    """The whole training state after `epoch`: plain tensors and numbers only, so it loads
    with weights_only=True and nothing in it can execute. With train.ema_decay, "ema" holds
    the averaged weights (and how many steps they average)."""
    np_name, np_keys, *np_rest = np.random.get_state(legacy=True)
    keys = np.asarray(np_keys, dtype=np.int64)
    return {
        "model": p.model.state_dict(),
        "optimizer": p.optimizer.state_dict(),
        "scheduler": p.scheduler.state_dict() if p.scheduler is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "epoch": epoch,
        "monitor": p.monitor,
        "tracker": {"best": tracker.best, "best_epoch": tracker.best_epoch, "stale": tracker.stale},
        # restore_best's weights, where they are not the model's own (saved once)
        "best_model": tracker.weights if tracker.best_epoch != epoch else None,
        "rng": {
            "python": random.getstate(),
            "numpy": [np_name, torch.from_numpy(keys), *np_rest],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "order": order.get_state(),
        },
        "config": resolved(p.spec),
    }


def restore(
    p: Prepared,
    state: Mapping[str, Any],
    order: torch.Generator,
    tracker: Tracker,
    ema: AveragedModel | None = None,
) -> int:
    """Load a checkpoint into the prepared run; returns the epoch it was taken after."""
    p.model.load_state_dict(state["model"])
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    p.optimizer.load_state_dict(state["optimizer"])
    if p.scheduler is not None and state.get("scheduler") is not None:
        p.scheduler.load_state_dict(state["scheduler"])
    saved = state["tracker"]
    tracker.best, tracker.best_epoch, tracker.stale = (
        saved["best"],
        saved["best_epoch"],
        saved["stale"],
    )
    stopping = p.spec.train.early_stopping
    if stopping is not None and stopping.restore_best and tracker.best_epoch:
        best = state.get("best_model")
        if best is None and tracker.best_epoch == state["epoch"]:
            best = p.model.state_dict()
        if best is not None:
            tracker.weights = {k: v.detach().clone() for k, v in best.items()}
    rng = state["rng"]
    random.setstate(_tuples(rng["python"]))
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    order.set_state(rng["order"])
    return int(state["epoch"])


def non_finite(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """How many parameters and optimizer state tensors hold NaN or infinite values, as a
    tensor on the model's device (reading it is the caller's host sync): a checkpoint
    holding any would train nothing when resumed, or export a broken model."""
    tensors: list[torch.Tensor] = [*model.parameters()]
    tensors += [
        v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)
    ]
    floats = [t.detach() for t in tensors if t.is_floating_point() or t.is_complex()]
    if not floats:
        return torch.zeros((), dtype=torch.int64)
    device = floats[0].device
    # each tensor's largest |value|, NaN or inf where any value is, without overflowing;
    # one call for all (a Python loop of isfinite took 4x as long for circles' model)
    norms = torch._foreach_norm(floats, math.inf)
    if len({(n.device, n.dtype) for n in norms}) == 1:
        return (~torch.isfinite(torch.stack(norms))).sum()
    # mixed devices or dtypes (Adam keeps its step counts on the cpu)
    return (~torch.stack([torch.isfinite(n).to(device) for n in norms])).sum()


def _tuples(value: Any) -> Any:
    """random.setstate wants tuples where a checkpoint may hold lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """torch.save into memory, then written whole (runs.files.write_bytes_atomic): a crash, a
    power cut or a full disk leaves the old file (WriteError names the file)."""
    write_bytes_atomic(path, saved_bytes(obj, path))


def saved_bytes(obj: dict[str, Any], path: Path) -> bytes:
    """What torch.save writes of `obj` (WriteError naming `path`, where it was to go, if it
    cannot be serialised)."""
    buffer = io.BytesIO()
    try:
        torch.save(obj, buffer)
    except RuntimeError as exc:  # torch reports a failed serialisation as RuntimeError
        raise write_failed(path, exc) from None
    return buffer.getvalue()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint, loaded with weights_only=True: nothing in it is executed."""
    import torch

    if not path.is_file():
        raise NncliError(
            f"{path} does not exist; the run saved no checkpoint (did it finish an epoch?)"
        )
    verify_checkpoint(path)  # torch.load does not check the zip's checksums
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise anything from IndexError to BadZipFile
        first = first_line(exc)
        raise NncliError(f"{path} is not a checkpoint nncli can load safely: {first}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise NncliError(f"{path} is not an nncli checkpoint (no 'model' entry)")
    return data


def verify_checkpoint(path: Path) -> None:
    """NncliError naming `path` unless every entry of the checkpoint matches its CRC-32.

    torch.load reads a checkpoint's zip without checking the checksums torch.save wrote, so
    a flipped bit in the weights loads as different weights; this reads the file once.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            infos = archive.infolist()
    except FileNotFoundError:
        raise NncliError(f"{path} does not exist") from None
    except Exception as exc:  # a damaged zip raises anything from BadZipFile to zlib.error
        first = first_line(exc)
        raise NncliError(f"{path} is damaged (not a whole checkpoint: {first})") from None
    if bad is not None:
        raise NncliError(
            f"{path} is damaged: its part '{bad}' fails its checksum (the file was changed "
            "or corrupted after it was written)"
        )
    # outside the checksums: torch's reader takes an entry marked a folder (MS-DOS bit 0x10,
    # or a Unix folder mode) for one, and loads other tensors than were saved
    folders = [
        i.filename for i in infos if i.external_attr & 0x10 or (i.external_attr >> 16) & 0o040000
    ]
    if folders:
        raise NncliError(f"{path} is damaged: its part '{folders[0]}' is marked as a folder")


def trained_weights(state: Mapping[str, Any]) -> Any:
    """The weights a finished run is used with (predict, eval, export, plot, show): the
    moving average's where the run kept one (train.ema_decay), since they scored its
    held-out splits, else the model's."""
    ema = state.get("ema")
    if isinstance(ema, Mapping):
        return {k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")}
    return state.get("model")


def load_weights(model: nn.Module, weights: Any, path: Path, config: Path) -> None:
    """A checkpoint's weights into `model`, or an NncliError naming the checkpoint, the
    config and the first tensor that differs (torch's own message starts with a line that
    names neither)."""
    if not isinstance(weights, Mapping):
        raise NncliError(f"{path} is not an nncli checkpoint (its 'model' entry holds no weights)")
    misfit = f"{path} does not fit the model of {config} (was config.yaml edited?)"
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in weights:
            raise NncliError(f"{misfit}: it has no tensor '{key}'")
        got = weights[key]
        if not isinstance(got, torch.Tensor):
            raise NncliError(f"{misfit}: its '{key}' is not a tensor")
        if got.shape != tensor.shape:
            raise NncliError(
                f"{misfit}: '{key}' is {_dims(got)} in the checkpoint, {_dims(tensor)} in the model"
            )
    extra = [key for key in weights if key not in expected]
    if extra:
        raise NncliError(f"{misfit}: it has a tensor '{extra[0]}' that the model lacks")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = first_line(exc)
        raise NncliError(f"{misfit}: {first}") from None


def _dims(tensor: torch.Tensor) -> str:
    return "x".join(str(d) for d in tensor.shape) or "a scalar"
