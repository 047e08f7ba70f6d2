"""`nncli export RUN`: a trained model as a file that loads without nncli, plus a JSON file
of what it expects (input shape, preprocessing) and gives (logits, probabilities, ...)."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.runs.files import BEST, CHECKPOINTS, CONFIG, LAST
from nncli.runs.record import read_info

FORMATS = ("state_dict", "exported", "torchscript", "onnx")
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
    run: Path, fmt: str, out: Path | None = None, checkpoint: str = "last"
) -> list[Path]:
    """Write the run's model in `fmt` and model.json into `out` (default RUN/export/FMT)."""
    import torch

    from nncli.config.spec import load_spec, resolved
    from nncli.engine.model import build_model
    from nncli.engine.state import load_checkpoint

    info = read_info(run)
    if fmt not in FORMATS:
        raise NncliError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    shape = info.get("input_shape")
    if not shape:
        raise NncliError(
            f"{run} records no input shape (trained by an older nncli); train it again"
        )
    spec = load_spec(run / CONFIG)
    state = load_checkpoint(run / CHECKPOINTS / (BEST if checkpoint == "best" else LAST))
    sample = torch.zeros(2, *shape)
    model, _ = build_model(spec.model.layers, sample)
    model.load_state_dict(state["model"])
    model.eval()

    folder = out or run / "export" / fmt
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FILES[fmt]
    if fmt == "state_dict":
        torch.save(model.state_dict(), target)
    elif fmt == "exported":
        batch = torch.export.Dim("batch")
        program = torch.export.export(model, (sample,), dynamic_shapes=({0: batch},))
        torch.export.save(program, target)
    elif fmt == "torchscript":
        with warnings.catch_warnings():
            # torch deprecates TorchScript in favour of torch.export; it still loads everywhere
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(torch.jit.trace(model, sample), str(target))  # type: ignore[no-untyped-call]
    else:
        _onnx(model, sample, target)

    written = [target]
    meta: dict[str, Any] = {
        "format": fmt,
        "file": target.name,
        "load": HOW_TO_LOAD[fmt],
        "input_shape": shape,
        "output": info.get("output"),
        "task": info.get("task"),
        "class_names": info.get("class_names"),
        "epoch": int(state["epoch"]),
        "layers": resolved(spec)["model"]["layers"],
        "torch": torch.__version__,
    }
    preprocessing = run / "preprocessing.json"
    if preprocessing.is_file():
        shutil.copyfile(preprocessing, folder / preprocessing.name)
        meta["preprocessing"] = preprocessing.name
        written.append(folder / preprocessing.name)
    (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return [*written, folder / "model.json"]


def _onnx(model: Any, sample: Any, target: Path) -> None:
    import importlib.util

    import torch

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise NncliError(
            f"ONNX export needs the {' and '.join(missing)} package(s), which are not installed: "
            "pip install 'nncli[onnx]' (or: pip install onnx onnxscript); or export another "
            "format (exported, torchscript, state_dict)"
        )
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
            torch.onnx.export(
                model,
                (sample,),
                str(target),
                input_names=["x"],
                dynamic_shapes=({0: "batch"},),
                external_data=weights > ONNX_INLINE_BYTES,
                verbose=False,
            )
    finally:
        registration.setLevel(level)
