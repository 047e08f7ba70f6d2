"""`nncli export RUN`: a trained model as a file that loads without nncli, plus a JSON file
of what it expects (input shape, preprocessing) and gives (logits, probabilities, ...)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import warnings
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nncli.errors import NncliError, first_line
from nncli.runs.files import (
    PREPROCESSING,
    make_folder,
    replace_synced,
    write_atomic,
    write_bytes_atomic,
    write_failed,
)

if TYPE_CHECKING:
    from nncli.trained.load import Checkpoint, TrainedRun


class ModelFormat(str, Enum):
    """What `nncli export --to` writes."""

    state_dict = "state_dict"
    exported = "exported"
    torchscript = "torchscript"
    onnx = "onnx"


FORMATS = tuple(f.value for f in ModelFormat)
ONNX_INLINE_BYTES = 1_500_000_000  # larger weights go to model.onnx.data (protobuf's 2 GB cap)
FILES = {
    "state_dict": "model_state_dict.pt",
    "exported": "model.pt2",
    "torchscript": "model.torchscript.pt",
    "onnx": "model.onnx",
}
HOW_TO_LOAD = {
    "state_dict": "torch.load(path, weights_only=True) into the layers listed in 'layers'",
    "exported": "torch.export.load(path).module()",
    "torchscript": "torch.jit.load(path)",
    "onnx": "onnxruntime.InferenceSession(path)",
}


def export_run(
    run: Path, to: ModelFormat, out: Path | None = None, checkpoint: Checkpoint = "last"
) -> list[Path]:
    """Write the run's model in format `to` and model.json into `out` (default
    RUN/export/FORMAT)."""
    import torch

    from nncli.config.spec import resolved
    from nncli.trained.load import load_run

    if to not in FORMATS:  # (a caller from Python may pass a plain string)
        raise NncliError(f"unknown export format '{to}'; choose one of {', '.join(FORMATS)}")
    fmt = ModelFormat(to).value
    if fmt == "onnx":
        _need_onnx()  # before anything is written
    t = load_run(run, checkpoint)
    info, shape = t.info, t.input_shape
    # a state_dict holds the layers' weights only: its outputs stay standardised
    model = t.model if fmt == "state_dict" else in_target_units(t)
    sample = torch.zeros(2, *shape)

    # a model the format cannot carry is refused before any folder is made
    made = _carried(fmt, model, sample, t) if fmt in ("exported", "torchscript") else None
    folder = make_folder(out or run / "export" / fmt)
    target = folder / FILES[fmt]
    # each format is made in memory and written whole: a full disk leaves the old file
    data = io.BytesIO()
    if fmt == "state_dict":
        torch.save(t.model.state_dict(), data)
    elif made is not None:
        if fmt == "exported":
            torch.export.save(made, data)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # (TorchScript's)
                torch.jit.save(made, data)
    if fmt == "onnx":
        _onnx(model, sample, target)
    else:
        write_bytes_atomic(target, data.getvalue())

    written = [target]
    meta: dict[str, Any] = {
        "format": fmt,
        "file": target.name,
        "load": HOW_TO_LOAD[fmt],
        "input_shape": shape,
        "output": info.output,
        "task": info.task,
        "class_names": None if info.class_names is None else list(info.class_names),
        "epoch": t.state.get("epoch"),
        "layers": resolved(t.spec)["model"]["layers"],
        "torch": torch.__version__,
    }
    pre = t.preprocessing
    if pre is not None and pre.target_mean is not None and pre.target_std is not None:
        meta["target_scale"] = {
            "targets": pre.targets,
            "mean": pre.target_mean,
            "std": pre.target_std,
            "in_model": model is not t.model,
            "note": "the model learned standardised targets; "
            + (
                "its last step here is output * std + mean: it answers in the targets' units"
                if model is not t.model
                else "these weights give standardised outputs: multiply by std, add mean"
            ),
        }
    if t.preprocessing is not None:
        preprocessing = run / PREPROCESSING
        write_bytes_atomic(folder / preprocessing.name, preprocessing.read_bytes())
        meta["preprocessing"] = preprocessing.name
        written.append(folder / preprocessing.name)
    write_atomic(folder / "model.json", json.dumps(meta, indent=2) + "\n")
    return [*written, folder / "model.json"]


def in_target_units(t: TrainedRun) -> Any:
    """The run's model answering in the targets' own units: where it learned standardised
    targets (a standardised timeseries), with `output * std + mean` as its last step, a
    plain nn.Linear (diagonal) that every format carries; else the model itself."""
    import torch
    from torch import nn

    pre = t.preprocessing
    if pre is None or pre.target_mean is None or pre.target_std is None:
        return t.model
    k = len(pre.target_mean)
    if list(t.shapes[-1]) != [k]:
        raise NncliError(
            f"{t.folder}: the model outputs {list(t.shapes[-1])} per sample, but its "
            f"standardised targets are {k} value(s); export cannot undo their scaling"
        )
    units = nn.Linear(k, k)
    with torch.no_grad():
        units.weight.copy_(torch.diag(torch.tensor(pre.target_std, dtype=torch.float32)))
        units.bias.copy_(torch.tensor(pre.target_mean, dtype=torch.float32))
    units.requires_grad_(False)
    return nn.Sequential(t.model, units).eval()


def _made(fmt: str, model: Any, sample: Any) -> Any:
    """`model` as torch.export's program (traced with a batch dimension of any size) or as
    a TorchScript trace of `sample`."""
    # where it cannot make the model, torch logs its graph and guesses at fixes before it
    # raises: the error nncli reports from it is enough
    before = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return _traced(fmt, model, sample)
    finally:
        logging.disable(before)


def _traced(fmt: str, model: Any, sample: Any) -> Any:
    import torch
    from torch.jit._trace import TracerWarning

    with warnings.catch_warnings():
        _quiet_rnn()
        # torch deprecates TorchScript in favour of torch.export; it still loads everywhere
        warnings.simplefilter("ignore", DeprecationWarning)
        # the tracer warns of every tensor read as a Python value, torch's own nn.LSTM
        # checks included: _carried checks what the trace gives instead
        warnings.simplefilter("ignore", TracerWarning)
        if fmt == "exported":
            batch = torch.export.Dim("batch")
            return torch.export.export(model, (sample,), dynamic_shapes=({0: batch},))
        return torch.jit.trace(model, sample)  # type: ignore[no-untyped-call]


def _carried(fmt: str, model: Any, sample: Any, t: TrainedRun) -> Any:
    """`model` made in `fmt`, checked to give the model's own outputs on a batch of inputs
    it has not seen (a trace keeps one path through code that branches on values): where
    it cannot make it, or the file would answer otherwise, nothing is written and the error
    names the layer it fails at."""
    import torch

    probe = _probe(t)
    try:
        made = _made(fmt, model, sample)
        program = made.module() if fmt == "exported" else made
        with torch.no_grad():
            same = _agree(program(probe), model(probe))
    except Exception as exc:  # torch's exporters raise many kinds on what they cannot take
        reason: str | None = first_line(exc)
    else:
        if same:
            return made
        reason = None
    h, at = probe, ""
    for i, (layer, shape) in enumerate(zip(t.model, [t.input_shape, *t.shapes], strict=False)):
        with torch.no_grad():
            want = layer(h)
        try:
            one = _made(fmt, layer, torch.zeros(2, *shape))
            one = one.module() if fmt == "exported" else one
            with torch.no_grad():
                ok = _agree(one(h), want)
        except Exception as exc:
            ok, reason = False, first_line(exc)
        if not ok:
            at = f" at model.layers.{i} ({t.spec.model.layers[i].type})"
            break
        h = want
    why = f": {reason}" if reason else ": its file would give other outputs than the model"
    others = ", ".join(f for f in ("exported", "torchscript", "onnx") if f != fmt)
    raise NncliError(
        f"{t.folder}: the model cannot be exported as {fmt}{at}{why}; nothing was written. "
        f"Export another format ({others}, or state_dict with the layers in config.yaml)"
    )


def _probe(t: TrainedRun) -> Any:
    """A few inputs unlike the all-zero trace sample (which a sequence model reads as
    padding): token ids 1.. for an embedding, else normal values; seeded."""
    import torch

    gen = torch.Generator().manual_seed(0)
    first = t.spec.model.layers[0]
    vocab = getattr(first, "vocab", None)
    if first.type == "embedding" and vocab is not None:
        return torch.randint(1, max(vocab, 2), (3, *t.input_shape), generator=gen).float()
    return torch.randn(3, *t.input_shape, generator=gen)


def _agree(got: Any, want: Any) -> bool:
    import torch

    return bool(torch.allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True))


def _quiet_rnn() -> None:
    """nn.LSTM (GRU, RNN) refreshes its weight list in every forward, which torch.export
    reports as a warning about torch's own module: nothing a user of nncli can act on."""
    # (by category: torch.export refuses a filter by message while it traces)
    warnings.simplefilter("ignore", UserWarning)


def _need_onnx() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise NncliError(
            f"ONNX export needs the {' and '.join(missing)} package(s), which are not installed: "
            "pip install 'nncli[onnx]' (or: pip install onnx onnxscript); or export another "
            "format (exported, torchscript, state_dict)"
        )


def _onnx(model: Any, sample: Any, target: Path) -> None:
    """model.onnx (and model.onnx.data for large weights) made in a temporary folder beside
    `target`, then each file synced and renamed into place."""
    import torch

    # one self-contained file where protobuf allows it (under 2 GB), quietly: the command's
    # stdout lists the files written and nothing else
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    # torch's exporter logs that torchvision's ops are skipped and warns about its own
    # internals: nothing a user of nncli can act on
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            _quiet_rnn()
            program = torch.onnx.export(
                model,
                (sample,),
                input_names=["x"],
                dynamic_shapes=({0: "batch"},),
                verbose=False,
            )
    finally:
        registration.setLevel(level)
    assert program is not None  # (the exporter returns it when given no file)
    # the data file's name is written inside model.onnx: save under the final names
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir()
        program.save(tmp / target.name, external_data=weights > ONNX_INLINE_BYTES)
        for part in sorted(tmp.iterdir()):
            with part.open("rb") as f:
                os.fsync(f.fileno())
            replace_synced(part, target.with_name(part.name))
    except OSError as exc:
        raise write_failed(target, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
