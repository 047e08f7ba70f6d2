"""`nncli show RUN`: a run's config, model (parameter counts from its checkpoint), metrics,
and with --weights the learned parameters (a single neuron reads as its equation)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nncli.config import yamlio
from nncli.config.spec import load_spec
from nncli.errors import NncliError
from nncli.runs.files import CHECKPOINTS, CONFIG
from nncli.runs.record import read_run
from nncli.tables import Format, render
from nncli.trained.load import CHECKPOINT_FILES, Checkpoint, load_run

ENDED: tuple[Checkpoint, ...] = ("last", "best")  # the weights a run ended with, first found


def equation(state: dict[str, Any]) -> str | None:
    """`y = 2.04 x + 0.98` when the model is one dense unit (weights `N.weight`, `N.bias`)."""
    tensors = [(k, v) for k, v in state.items() if hasattr(v, "shape")]
    if len(tensors) not in (1, 2) or not tensors[0][0].endswith("weight"):
        return None
    weight = tensors[0][1]
    if weight.ndim != 2 or weight.shape[0] != 1:
        return None
    bias = float(tensors[1][1].reshape(-1)[0]) if len(tensors) == 2 else 0.0
    ws = [float(w) for w in weight.reshape(-1)]
    names = ["x"] if len(ws) == 1 else [f"x{i + 1}" for i in range(len(ws))]
    terms = " + ".join(f"{w:.4g} {n}" for w, n in zip(ws, names, strict=True))
    sign = "-" if bias < 0 else "+"
    return f"y = {terms} {sign} {abs(bias):.4g}".replace("+ -", "- ")


def describe_run(run: Path, weights: bool = False) -> Iterator[Any]:
    info = read_run(run)
    # every file read before the first line: a damaged one is the only thing printed
    if (run / CONFIG).is_file():
        load_spec(run / CONFIG)  # a located error where it is no experiment file
    config = yamlio.load(run / CONFIG).data if (run / CONFIG).is_file() else {}
    # the weights the run ended with; best.pt where the run stopped before saving last.pt,
    # none where it saved neither
    state: dict[str, Any] = {}
    checkpoint: Path | None = None
    ended = next((c for c in ENDED if (run / CHECKPOINTS / CHECKPOINT_FILES[c]).is_file()), None)
    if ended is not None:
        trained = load_run(run, ended)
        state, checkpoint = trained.state["model"], trained.checkpoint

    duration = "?" if info.duration_s is None else info.duration_s
    yield f"run {run}"
    yield (
        f"status {info.status}, {info.epochs_done or 0}/{info.epochs} epochs, "
        f"started {info.started_at}, {duration}s, device {info.device}, "
        f"seed {info.seed}, {info.n_params or 0:,} parameters, task {info.task}"
    )
    layers = config.get("model", {}).get("layers", [])
    loss, opt = config.get("loss", {}), config.get("optimizer", {})
    source = config.get("data", {}).get("source")
    yield f"data {source}, loss {loss.get('name')}, optimizer {opt.get('name')} lr {opt.get('lr')}"
    rows = []
    for i, layer in enumerate(layers):
        shapes = {k: tuple(v.shape) for k, v in state.items() if k.split(".")[0] == str(i)}
        params = {k: v for k, v in layer.items() if k != "type"}
        rows.append(
            {
                "#": i,
                "layer": layer.get("type"),
                "settings": ", ".join(f"{k}={v}" for k, v in params.items()),
                "weights": ", ".join("x".join(map(str, s)) for s in shapes.values()),
                "params": sum(_numel(s) for s in shapes.values()),
            }
        )
    yield render(rows, ["#", "layer", "settings", "weights", "params"], Format.table, title="model")

    final = info.final or {}
    best = info.best or {}
    metric_rows = [
        {
            "metric": k,
            "final": v,
            "best": best[k].value if k in best else None,
            "best epoch": best[k].epoch if k in best else None,
        }
        for k, v in final.items()
        if k not in ("epoch", "lr", "time_s")
    ]
    if metric_rows:
        yield render(
            metric_rows, ["metric", "final", "best", "best epoch"], Format.table, title="metrics"
        )
    if info.error:
        yield f"error: {info.error}"
    if weights:
        if checkpoint is None:
            raise NncliError(f"{run} has no checkpoint to read weights from")
        yield f"weights ({checkpoint.name}):"
        eq = equation(state)
        if eq:
            yield eq
        for key, tensor in state.items():
            if hasattr(tensor, "shape") and tensor.is_floating_point():
                yield f"{key} {tuple(tensor.shape)}\n{tensor.numpy().round(4)}"


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
