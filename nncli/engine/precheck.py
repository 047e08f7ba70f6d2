"""What `prepare` would refuse that is known without torch or the data's rows, for `nncli
validate`: data files that do not exist, columns a CSV lacks, and a model whose outputs
cannot match the targets. Each check calls the rule training applies (`FileParams.
missing_files`, `csv._known`, `task.task_of`), so both refuse a file in the same words."""

from __future__ import annotations

from collections.abc import Sequence

from nncli.config.spec import LayerSpec, Spec
from nncli.data import FileParams
from nncli.data.augment import check as augment_check
from nncli.data.augment import known_shape
from nncli.data.outline import outline
from nncli.engine.task import output_layer, task_of
from nncli.errors import NncliError
from nncli.layers import info as layer_info


def precheck(spec: Spec) -> list[NncliError]:
    """The errors `prepare(spec)` would raise that are found without building anything;
    each names its key (`error.key` or the start of its message)."""
    if isinstance(spec.data, FileParams):
        missing = spec.data.missing_files()
        if missing:
            return missing
    found, errors = outline(spec.data, spec.loss_info.target)
    errors += augment_check(spec.data.augment, known_shape(spec.data), spec.loss.name)
    if found is None:
        return errors
    k = n_outputs(spec.model.layers, found.flat)
    if k is None:
        return errors
    at = output_layer([layer.type for layer in spec.model.layers])
    try:
        task_of(found.kind, found.count, found.count, spec.loss.name, spec.loss_info, k, at)
    except NncliError as exc:
        errors.append(exc)
    return errors


def n_outputs(layers: Sequence[LayerSpec], flat: bool) -> int | None:
    """The outputs per sample of a model whose last layer with weights has `units` and
    takes vectors (the data's samples are `flat`, or a flatten comes before it), followed
    only by layers that keep the shape; None where only building the model tells."""
    types = [layer.type for layer in layers]
    at = next((i for i in range(len(types) - 1, -1, -1) if layer_info(types[i]).affine), None)
    if at is None:
        return None
    units = getattr(layers[at], "units", None)
    # flatten: the layer that passes values through but is no activation (which keeps shape)
    flattened = any(
        layer_info(t).passes == "values" and not layer_info(t).activation for t in types[:at]
    )
    if not isinstance(units, int) or not (flat or flattened):
        return None
    keeps = [
        layer_info(t).activation or layer_info(t).passes is not None or layer_info(t).normalisation
        for t in types[at + 1 :]
    ]
    return units if all(keeps) else None
