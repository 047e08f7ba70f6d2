"""Guards on the choice of activations and loss: stacks that validate and train, but train
badly. Each is a Problem at the offending layer or loss (FILE:LINE:COL) with its fix; torch-free."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from nncli import blocks as nested
from nncli.config import yamlio
from nncli.config.activations import file_key
from nncli.config.locate import where
from nncli.config.model import ModelSpec, walk
from nncli.config.model import file_key as nested_file_key
from nncli.config.spec import Experiment, Spec
from nncli.errors import Problem
from nncli.layers import info


def check_experiment(exp: Experiment) -> list[Problem]:
    """The warnings of an experiment file, from what loading it already parsed."""
    return check(exp.spec, exp.doc, exp.overrides)


def check(spec: Spec, doc: yamlio.Document, overrides: Sequence[str] = ()) -> list[Problem]:
    """Every warning of `spec`, located in `doc` (or at the `--set` that gave the value)."""
    found = [f for key, specs in _layer_lists(spec.model) for f in _linear_runs(key, specs)]
    found += _output(spec)
    problems = []
    for found_key, message, hint in found:
        key = file_key(doc.data, found_key)  # `{dense: 1, activation: sigmoid}`: 2 layers
        # a loss written as a map is pointed at by its `name:`; a nested layer is named by
        # its spec key (`...residual.layers.1`, as build errors name it), found in the file
        # where its list is written
        at = (*key, "name") if key == ("loss",) else nested_file_key(doc.data, found_key)
        place = where(doc, at, overrides)
        problems.append(Problem(place, ".".join(map(str, key)), message, hint))
    return problems


Found = tuple[yamlio.Key, str, str | None]


def _layer_lists(model: ModelSpec) -> Iterator[tuple[yamlio.Key, Sequence[Any]]]:
    """Every list of layers with its key: model.layers, each block of model.blocks, and the
    lists inside a residual or parallel of them (a block's layers once, where defined)."""
    tops: list[tuple[yamlio.Key, Sequence[Any]]] = [(("model", "layers"), model.layers)]
    tops += [(("model", "blocks", name), specs) for name, specs in model.blocks.items()]
    for top, specs in tops:
        yield top, specs
        for key, spec in walk(specs, top):
            for part, inner in nested.inner(spec):
                yield (*key, *part), inner


def _linear_runs(at: yamlio.Key, specs: Sequence[Any]) -> list[Found]:
    """One warning per run of weighted layers of one list with nothing non-linear between
    them (a layer holding layers ends a run: its own lists are looked at on their own)."""
    types = [layer.type for layer in specs]
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
        prefix = ".".join(map(str, at))
        named = [f"{prefix}.{i} ({types[i]})" for i in run]
        listed = ", ".join(named[:-1]) + " and " + named[-1]
        found.append(
            (
                (*at, run[1]),
                f"no non-linearity between {listed}: linear layers in a row compose into one "
                "linear map, so together they learn nothing a single layer cannot",
                "put an activation such as relu or tanh after each hidden layer",
            )
        )
    return found


def _last(at: yamlio.Key, specs: Sequence[Any]) -> tuple[yamlio.Key, str] | None:
    """The layer that gives the output of `specs` (dropout, flatten and the like pass it
    on): inside a block used last, that block's last layer."""
    for i in range(len(specs) - 1, -1, -1):
        spec = specs[i]
        if isinstance(spec, nested.Block) and spec.layers():
            return _last(("model", "blocks", spec.name), spec.layers())
        if info(spec.type).passes is None:
            return (*at, i), spec.type
    return None


def _output(spec: Spec) -> list[Found]:
    """The last layer against what the loss expects of the model's output."""
    found = _last(("model", "layers"), spec.model.layers)
    if found is None:
        return []
    where, end = found
    last = ".".join(map(str, where))
    loss, loss_info = spec.loss.name, spec.loss_info
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
                f"loss '{loss}' expects {what}, but the model ends with {end} ({last})",
                f"end the model with {want}" + (f", {instead}" if instead else ""),
            )
        ]
    return []
