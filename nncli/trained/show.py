"""`nncli show RUN`: a run's config, model (parameter counts from its checkpoint), metrics,
and with --weights the learned parameters (a single neuron reads as its equation).
`nncli show FILE.yaml`: an experiment's model, built on its data, before any training."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.blocks import Block, Parallel, Residual
from nncli.config.spec import load_experiment, resolved
from nncli.engine.state import trained_weights
from nncli.errors import NncliError
from nncli.layers import info as layer_info
from nncli.runs.files import CHECKPOINTS, CONFIG, json_safe
from nncli.runs.folder import NOT_METRICS
from nncli.runs.record import RunInfo, read_run
from nncli.tables import Format, render
from nncli.trained.load import CHECKPOINT_FILES, Checkpoint, TrainedRun, load_run

ENDED: tuple[Checkpoint, ...] = ("last", "best")  # the weights a run ended with, first found


def equation(t: TrainedRun) -> list[str]:
    """A single neuron as its equation in the data's own units: `y = 2.041 x + 0.9804`, or
    `z = w.x + b` then `y = sigmoid(z)` where an activation follows (or the loss applies
    one); [] for any other model. The run's input scaling and standardisation
    (preprocessing.json) are folded into w and b, and inputs go by their column names."""
    tensors = [(k, v) for k, v in trained_weights(t.state).items() if hasattr(v, "shape")]
    if len(tensors) not in (1, 2) or not tensors[0][0].endswith("weight"):
        return []
    weight = tensors[0][1]
    if weight.ndim != 2 or weight.shape[0] != 1:
        return []
    neuron = int(tensors[0][0].split(".")[0])
    out = "z"
    for i, layer in enumerate(t.spec.model.layers):
        traits = layer_info(layer.type)
        if i == neuron or traits.passes is not None:  # dropout, flatten: nothing in eval
            continue
        if not (traits.activation and i > neuron):
            return []
        out = f"{layer.type}({out})"
    applies = t.spec.loss_info.applies
    if applies:
        out = f"{applies}({out})"

    ws = [float(w) for w in weight.reshape(-1)]
    b = float(tensors[1][1].reshape(-1)[0]) if len(tensors) == 2 else 0.0
    pre = t.preprocessing
    names = [f"x{i + 1}" for i in range(len(ws))]
    folded = False
    if pre is not None and len(pre.columns) == len(ws):
        gain, offset = pre.affine()  # input = raw * gain + offset
        folded = any(g != 1.0 for g in gain) or any(c != 0.0 for c in offset)
        b += sum(w * c for w, c in zip(ws, offset, strict=True))
        ws = [w * g for w, g in zip(ws, gain, strict=True)]
        names = [n if n.isidentifier() else f"[{n}]" for n in pre.columns]
    if names == ["x1"]:
        names = ["x"]
    target = "y"
    if pre is not None and pre.kind == "regression" and len(pre.targets) == 1:
        target = pre.targets[0]
    terms = " + ".join(f"{w:.4g} {n}" for w, n in zip(ws, names, strict=True))
    linear = f"{terms} {'-' if b < 0 else '+'} {abs(b):.4g}".replace("+ -", "- ")
    lines = [f"{target} = {linear}"] if out == "z" else [f"z = {linear}", f"{target} = {out}"]
    if applies:
        lines[-1] += f"  ({applies} applied by the loss, {t.spec.loss.name})"
    if folded:
        lines.append(
            "(in the data's own units: the run's input scaling is folded into w and b; "
            "the tensors below take the scaled inputs)"
        )
    return lines


MODEL_COLUMNS = ("#", "layer", "settings", "output", "params")
Row = dict[str, Any]
METRIC_COLUMNS = ("metric", "final", "best", "best epoch")


def layer_table(layers: list[Row]) -> list[dict[str, Any]]:
    """The layers as `show` prints them (MODEL_COLUMNS): nested ones indented, settings as
    `k=v, ...`, the output shape as `a x b`."""
    return [
        {
            **row,
            "layer": "  " * row["depth"] + str(row["layer"]),
            "settings": ", ".join(f"{k}={v}" for k, v in row["settings"].items()),
            "output": None if row["output"] is None else " x ".join(map(str, row["output"])),
        }
        for row in layers
    ]


@dataclass
class Summary:
    """What `show` says of a run, read once: the text and the JSON forms both print it."""

    run: Path
    info: RunInfo
    config: dict[str, Any]
    # #, depth, layer, settings, output (shape or None), params: a row per layer, those
    # inside a residual, parallel or block below it (# is its module name)
    layers: list[Row]
    built: bool  # the model was built from a checkpoint (outputs and counts are its own)
    metrics: list[dict[str, Any]]  # metric, final, best, best epoch
    trained: TrainedRun | None
    state: dict[str, Any]  # the checkpoint's trained weights

    @property
    def total(self) -> int:
        """The model's parameters (the top-level rows: nested rows are part of them)."""
        return sum(int(row["params"]) for row in self.layers if row["depth"] == 0)

    def layer_table(self) -> list[dict[str, Any]]:
        return layer_table(self.layers)

    def weights(self) -> tuple[Path, list[str], dict[str, Any]]:
        """The checkpoint read, the equation of a single neuron, and the float tensors."""
        if self.trained is None:
            raise NncliError(f"{self.run} has no checkpoint to read weights from")
        tensors = {
            k: v for k, v in self.state.items() if hasattr(v, "shape") and v.is_floating_point()
        }
        return self.trained.checkpoint, equation(self.trained), tensors


def summarise(run: Path) -> Summary:
    info = read_run(run)
    # every file read before the first line: a damaged one is the only thing printed.
    # The weights the run ended with: best.pt where it stopped before saving last.pt, none
    # where it saved neither. config.yaml is parsed once (it is the resolved spec).
    state: dict[str, Any] = {}
    trained: TrainedRun | None = None
    config: dict[str, Any] = {}
    ended = next((c for c in ENDED if (run / CHECKPOINTS / CHECKPOINT_FILES[c]).is_file()), None)
    if ended is not None:
        trained = load_run(run, ended)
        state = trained_weights(trained.state)
        config = resolved(trained.spec)
    elif (run / CONFIG).is_file():
        config = load_experiment(run / CONFIG).doc.data  # a located error where it is none

    rows: list[Row] = []
    for i, layer in enumerate(config.get("model", {}).get("layers", [])):
        shapes = {k: tuple(v.shape) for k, v in state.items() if k.split(".")[0] == str(i)}
        rows.append(
            {
                "#": str(i),
                "depth": 0,
                "layer": layer.get("type"),
                "settings": _settings(layer),
                "output": None,
                "params": sum(_numel(s) for s in shapes.values()),
            }
        )
    if trained is not None:  # the model as built knows each layer's output (like Keras's)
        outputs = _outputs(trained.model, trained.input_shape)
        rows = list(_tree(trained.spec.model.layers, list(trained.model), "", 0, outputs))
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
        if k not in NOT_METRICS
    ]
    return Summary(run, info, config, rows, trained is not None, metric_rows, trained, state)


@dataclass
class Planned:
    """What `show FILE.yaml` says of an experiment: its model as prepare builds it (on the
    data's train samples, on the cpu), before any training."""

    file: Path
    config: dict[str, Any]  # the resolved spec (an embedding's vocab filled from the data)
    layers: list[Row]  # as Summary.layers
    total: int  # the model's parameters


def plan(file: Path, weights: bool = False) -> Planned:
    """Build `file`'s model as training would (every input mistake refused as train refuses
    it, located in the file) and draw it layer by layer, nested layers below their parent."""
    from nncli.config.locate import located
    from nncli.engine.prepare import prepare

    if weights:
        raise NncliError(
            f"{file} is an experiment file, which holds no learned weights; --weights reads "
            f"a trained run: train it (nncli train {file}), then show the run folder"
        )
    exp = load_experiment(file)
    try:
        p = prepare(exp.spec, "cpu")
    except NncliError as exc:
        at = located(exc, exp)
        if at is None:
            raise
        raise NncliError(str(at)) from None
    model = p.model.eval()
    outputs = _outputs(model, list(p.splits["train"][0].shape[1:]))
    rows = list(_tree(p.spec.model.layers, list(model), "", 0, outputs))
    return Planned(file, resolved(p.spec), rows, p.n_params)


def describe(path: Path, weights: bool = False) -> Iterator[Any]:
    """`show`'s text for a run folder, or for an experiment file (its model untrained)."""
    if not path.is_file():
        yield from describe_run(path, weights)
        return
    planned = plan(path, weights)
    config = planned.config
    loss, opt = config.get("loss", {}), config.get("optimizer", {})
    yield f"experiment {path} (not trained: the model as training would build it)"
    source = config.get("data", {}).get("source")
    yield f"data {source}, loss {loss.get('name')}, optimizer {opt.get('name')} lr {opt.get('lr')}"
    yield render(layer_table(planned.layers), list(MODEL_COLUMNS), Format.table, title="model")
    yield f"{planned.total:,} parameters"


def describe_run(run: Path, weights: bool = False) -> Iterator[Any]:
    """`show`'s text: lines and tables, in order."""
    s = summarise(run)
    info, config = s.info, s.config
    duration = "?" if info.duration_s is None else info.duration_s
    yield f"run {run}"
    yield (
        f"status {info.status}, {info.epochs_done or 0}/{info.epochs} epochs, "
        f"started {info.started_at}, {duration}s, device {info.device}, "
        f"seed {info.seed}, {info.n_params or 0:,} parameters, task {info.task}"
    )
    loss, opt = config.get("loss", {}), config.get("optimizer", {})
    source = config.get("data", {}).get("source")
    yield f"data {source}, loss {loss.get('name')}, optimizer {opt.get('name')} lr {opt.get('lr')}"
    yield render(s.layer_table(), list(MODEL_COLUMNS), Format.table, title="model")
    yield f"{s.total:,} parameters" + ("" if s.built else " (no checkpoint to build from)")
    if s.metrics:
        yield render(s.metrics, list(METRIC_COLUMNS), Format.table, title="metrics")
    if info.error:
        yield f"error: {info.error}"
    if weights:
        checkpoint, lines, tensors = s.weights()
        yield f"weights ({checkpoint.name}):"
        yield from lines
        for key, tensor in tensors.items():
            yield f"{key} {tuple(tensor.shape)}\n{tensor.numpy().round(4)}"


def as_json(path: Path, weights: bool = False) -> str:
    """`show --format json` of a run folder, or of an experiment file (config, layers,
    parameters)."""
    if not path.is_file():
        return run_json(path, weights)
    p = plan(path, weights)
    facts = {"experiment": str(path), "config": p.config, "layers": _json_layers(p.layers)}
    return json.dumps(json_safe({**facts, "parameters": p.total}), indent=2)


def _json_layers(rows: list[Row]) -> list[dict[str, Any]]:
    keys = ("depth", "layer", "settings", "output", "params")
    return [{"module": r["#"], **{k: r[k] for k in keys}} for r in rows]


def run_json(run: Path, weights: bool = False) -> str:
    """`show --format json`: the same facts as one JSON object (NaN and infinity as null)."""
    s = summarise(run)
    info = s.info
    loss, opt = s.config.get("loss", {}), s.config.get("optimizer", {})
    facts: dict[str, Any] = {
        "run": str(run),
        "name": info.name,
        "status": info.status,
        "epochs_done": info.epochs_done or 0,
        "epochs": info.epochs,
        "started_at": info.started_at,
        "duration_s": info.duration_s,
        "device": info.device,
        "seed": info.seed,
        "n_params": info.n_params,
        "task": info.task,
        "data": s.config.get("data", {}).get("source"),
        "loss": loss.get("name"),
        "optimizer": opt.get("name"),
        "lr": opt.get("lr"),
        "config": s.config,
        "layers": _json_layers(s.layers),
        "parameters": s.total,
        "built": s.built,
        "metrics": {
            r["metric"]: {"final": r["final"], "best": r["best"], "best_epoch": r["best epoch"]}
            for r in s.metrics
        },
        "error": info.error,
    }
    if weights:
        checkpoint, lines, tensors = s.weights()
        facts["weights"] = {
            "checkpoint": checkpoint.name,
            "equation": lines,
            "tensors": {
                k: {"shape": list(v.shape), "values": v.tolist()} for k, v in tensors.items()
            },
        }
    return json.dumps(json_safe(facts), indent=2)


def _settings(layer: dict[str, Any]) -> dict[str, Any]:
    """A layer's parameters, those holding layers left out (they are rows of their own)."""
    return {k: v for k, v in layer.items() if k != "type" and not isinstance(v, list)}


def _outputs(model: Any, input_shape: list[int]) -> dict[str, tuple[int, ...]]:
    """The output shape of every module of `model` (in eval mode), by its name, for one
    sample."""
    import torch

    found: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(
            # an nn.LSTM inside a layer returns (output, state): its output's shape
            lambda _m, _i, out, name=name: found.__setitem__(
                name, tuple((out[0] if isinstance(out, tuple) else out).shape[1:])
            )
        )
        for name, module in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return found


def _row(name: str, depth: int, label: str, settings: Any, module: Any, outputs: Any) -> Row:
    shape = outputs.get(name)
    return {
        "#": name,
        "depth": depth,
        "layer": label,
        "settings": settings,
        "output": None if shape is None else list(shape),
        "params": sum(p.numel() for p in module.parameters()),  # buffers are not
    }


def _tree(specs: Any, modules: list[Any], prefix: str, depth: int, outputs: Any) -> Iterator[Row]:
    """One row per layer, the layers inside a residual, parallel or block below it;
    `#` is the layer's module name (its weights' prefix in --weights)."""
    for i, (spec, module) in enumerate(zip(specs, modules, strict=True)):
        name = f"{prefix}{i}"
        yield _row(name, depth, spec.type, _settings(spec.model_dump()), module, outputs)
        if isinstance(spec, Residual):
            yield from _tree(spec.layers, list(module.body), f"{name}.body.", depth + 1, outputs)
            if module.projection is not None:
                what = "1x1 convolution" if module.projection.weight.ndim > 2 else "linear map"
                yield _row(
                    f"{name}.projection",
                    depth + 1,
                    "projection",
                    {"kind": what},
                    module.projection,
                    outputs,
                )
        elif isinstance(spec, Parallel):
            for b, branch in enumerate(spec.branches):
                inner = list(module.branches[b])
                yield from _tree(branch, inner, f"{name}.branches.{b}.", depth + 1, outputs)
        elif isinstance(spec, Block):
            if spec.repeat == 1:
                yield from _tree(spec.layers(), list(module), f"{name}.", depth + 1, outputs)
                continue
            for r, rep in enumerate(module):
                label = f"{spec.name} {r + 1} of {spec.repeat}"
                yield _row(f"{name}.{r}", depth + 1, label, {}, rep, outputs)
                yield from _tree(spec.layers(), list(rep), f"{name}.{r}.", depth + 2, outputs)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
