"""Guards on the choice of activations and loss: stacks that validate and train, but train
badly. Each is a Problem at the offending layer or loss (FILE:LINE:COL) with its fix; torch-free."""

from __future__ import annotations

from collections.abc import Sequence

from nncli.config import yamlio
from nncli.config.activations import file_key
from nncli.config.locate import where
from nncli.config.spec import Experiment, Spec
from nncli.errors import Problem
from nncli.layers import info


def check_experiment(exp: Experiment) -> list[Problem]:
    """The warnings of an experiment file, from what loading it already parsed."""
    return check(exp.spec, exp.doc, exp.overrides)


def check(spec: Spec, doc: yamlio.Document, overrides: Sequence[str] = ()) -> list[Problem]:
    """Every warning of `spec`, located in `doc` (or at the `--set` that gave the value)."""
    types = [layer.type for layer in spec.model.layers]
    found = [*_linear_runs(types), *_output(types, spec)]
    problems = []
    for found_key, message, hint in found:
        key = file_key(doc.data, found_key)  # `{dense: 1, activation: sigmoid}`: 2 layers
        # a loss written as a map is pointed at by its `name:`
        place = where(doc, (*key, "name") if key == ("loss",) else key, overrides)
        problems.append(Problem(place, ".".join(map(str, key)), message, hint))
    return problems


Found = tuple[yamlio.Key, str, str | None]


def _linear_runs(types: list[str]) -> list[Found]:
    """One warning per run of weighted layers with nothing non-linear between them."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, kind in enumerate(types):
        if info(kind).affine:
            current.append(i)
        elif not info(kind).keeps_linear:
            current = []
            continue
        if len(current) == 2:
            runs.append(current)
    found: list[Found] = []
    for run in runs:
        named = [f"model.layers.{i} ({types[i]})" for i in run]
        listed = ", ".join(named[:-1]) + " and " + named[-1]
        found.append(
            (
                ("model", "layers", run[1]),
                f"no non-linearity between {listed}: linear layers in a row compose into one "
                "linear map, so together they learn nothing a single layer cannot",
                "put an activation such as relu or tanh after each hidden layer",
            )
        )
    return found


def _output(types: list[str], spec: Spec) -> list[Found]:
    """The last layer against what the loss expects of the model's output."""
    last = next((i for i in range(len(types) - 1, -1, -1) if info(types[i]).passes is None), None)
    if last is None:
        return []
    end, loss, loss_info = types[last], spec.loss.name, spec.loss_info
    where: yamlio.Key = ("model", "layers", last)
    own, squash = loss_info.applies, info(end).output_range
    if loss_info.output == "logits" and squash is not None and own is not None:
        effect = {
            ("sigmoid", "sigmoid"): "every probability lands between 0.5 and 0.73",
            ("softmax", "softmax"): "class probabilities end up near uniform",
        }.get((end, own), f"the logits are confined to {squash}")
        keep = "; or keep it and use loss: bce" if end == own == "sigmoid" else ""
        return [
            (
                where,
                f"{end} before loss '{loss}', which applies {own} itself: the outputs are "
                f"squashed twice ({effect}), so the loss cannot get confident and gradients "
                "shrink",
                f"remove this {end}: {loss} wants the last layer's raw outputs, the logits{keep}",
            )
        ]
    wanted = loss_info.ends_with
    if wanted is not None and end != wanted[0]:
        want, what, instead = wanted
        return [
            (
                ("loss",),
                f"loss '{loss}' expects {what}, but the model ends with {end} "
                f"(model.layers.{last})",
                f"end the model with {want}" + (f", {instead}" if instead else ""),
            )
        ]
    return []
