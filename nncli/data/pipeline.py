"""From a data section to model inputs: load a source, split it (seeded, stratified) and
fit the preprocessing on the train split (`prepare`)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from nncli.data import SPLITS, DataParams, Dataset, LossTarget, Split, datasets
from nncli.data.npy import fit_streamed, on_disk
from nncli.data.preprocess import Feature, Preprocessing
from nncli.errors import NncliError

if TYPE_CHECKING:
    from typing import Any

    import numpy as np
    from numpy.typing import NDArray


def load(params: DataParams, seed: int, loss_target: LossTarget | None = None) -> Dataset:
    """Build the dataset a data section names, with `seed` for anything random; its x flat
    (N, F) and its preprocessing laid out but not fitted. `loss_target` settles a source's
    `task:` where the file leaves it to the loss."""
    import numpy as np

    name = getattr(params, datasets.key)
    entry = datasets.get(name)
    # a source whose targets could be classes or values (`task:`) also hears the loss's view
    if "task" in type(params).model_fields:
        dataset = entry.build(params, seed, loss_target)
    else:
        dataset = entry.build(params, seed)
    natural = list(dataset.x.shape[1:])
    flat = dataset.x.reshape(len(dataset.x), -1)
    width = flat.shape[1]
    shape = list(getattr(params, "shape", None) or natural)
    if math.prod(shape) != width:
        raise NncliError(
            f"data.shape {shape} holds {math.prod(shape)} values but each sample of "
            f"{name} has {width} ({'x'.join(map(str, natural))})"
        )
    names = dataset.feature_names or [f"x{i + 1}" for i in range(width)]
    features = [Feature(name=n, categories=dataset.categories.get(n)) for n in names]
    if sum(len(f.columns) for f in features) != width:  # pragma: no cover - a builder's bug
        raise ValueError(f"{name}: feature names do not match the columns")
    targets = dataset.target_names or (
        dataset.class_names if dataset.kind == "multilabel" and dataset.class_names else ["y"]
    )
    pre = Preprocessing(
        source=name,
        features=features,
        kind=dataset.kind,
        targets=targets,
        class_names=dataset.class_names,
        shape=shape,
        scale=getattr(params, "scale", None),
        standardize=getattr(params, "standardize", False),
        fill=getattr(params, "fill", None),
        series=dataset.series,
        text=dataset.tokens,
        vocab_size=dataset.vocab_size,
    )
    # inputs streamed from their file stay there; they become float32 batch by batch
    x = flat if on_disk(flat) else np.ascontiguousarray(flat, dtype=np.float32)
    return replace(dataset, x=x, preprocessing=pre)


def split(dataset: Dataset, spec: Split, seed: int) -> dict[str, NDArray[np.int64]]:
    """Seeded indices of each split present (train always; val/test where a file gives it or
    its fraction is above 0).

    Fractions are taken from the rows no file assigns. Stratified splits take each fraction
    from every class, so small classes are kept in proportion; an empty split is an error
    that says how to fix it.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(dataset.x)
    given = dataset.given
    pool = np.arange(n)
    if given:
        pool = np.setdiff1d(pool, np.concatenate(list(given.values())))
    fractions = {"val": spec.val, "test": spec.test}
    for name in given:
        fractions.pop(name, None)
    if spec.stratify and dataset.kind == "classification":
        groups = [pool[dataset.y[pool] == c] for c in np.unique(dataset.y[pool])]
    else:
        groups = [pool]
    parts: dict[str, list[NDArray[np.int64]]] = {"train": [], "val": [], "test": []}
    for group in groups:
        shuffled = rng.permutation(group)
        start = 0
        for name, fraction in fractions.items():
            take = round(fraction * len(shuffled))
            parts[name].append(shuffled[start : start + take])
            start += take
        parts["train"].append(shuffled[start:])
    out: dict[str, NDArray[np.int64]] = {}
    for name in SPLITS:
        if name in given:
            out[name] = given[name].astype(np.int64)
            continue
        if name != "train" and fractions[name] == 0:
            continue
        idx = np.sort(np.concatenate(parts[name])).astype(np.int64)
        if len(idx) == 0:
            fix = (
                "use more samples or a larger fraction"
                if name != "train"
                else "lower data.split.val / data.split.test"
            )
            raise NncliError(
                f"the {name} split of {len(pool)} samples is empty; {fix}",
                key="data.split" if name == "train" else f"data.split.{name}",
            )
        out[name] = rng.permutation(idx) if name == "train" else idx
    return out


def _check_classes(dataset: Dataset, indices: dict[str, NDArray[np.int64]]) -> list[str]:
    """A class absent from the train split is an error; from a held-out one, a warning."""
    import numpy as np

    names = dataset.class_names or []
    if len(names) == 1:  # no loss or output can tell one class from nothing
        raise NncliError(
            f"the target holds one class ('{names[0]}') in all {len(dataset.y)} rows; a "
            "classifier needs rows of at least two classes",
            key="data.target",
        )
    warnings = []
    for split_name, idx in indices.items():
        absent = [names[c] for c in np.setdiff1d(np.arange(len(names)), dataset.y[idx])]
        if not absent:
            continue
        listed = ", ".join(repr(a) for a in absent[:5]) + (" ..." if len(absent) > 5 else "")
        if split_name == "train":
            raise NncliError(
                f"class(es) {listed} have no rows in the train split ({len(idx)} rows), so the "
                "model cannot learn them; add rows of them or remove them from the data",
                key="data.split",
            )
        warnings.append(
            f"the {split_name} split ({len(idx)} rows) has no rows of class(es) {listed}; its "
            "metrics leave them out (use a larger data.split fraction or more data)"
        )
    return warnings


def prepare(
    params: DataParams,
    seed: int,
    loss_target: LossTarget | None = None,
    batch_size: int | None = None,
) -> tuple[Dataset, dict[str, NDArray[np.int64]]]:
    """Load, split, fit the preprocessing on the train split only and apply it to every
    row: the dataset's x becomes the model inputs (N, *shape)."""
    dataset = load(params, seed, loss_target)
    indices = split(dataset, params.split, seed)
    warnings = list(dataset.warnings)
    if dataset.kind == "classification":
        warnings += _check_classes(dataset, indices)
    n_train = len(indices["train"])
    if batch_size is not None and n_train < batch_size:
        warnings.append(
            f"the train split has {n_train} rows, fewer than train.batch_size {batch_size}: "
            "every step uses all of them"
        )
    assert dataset.preprocessing is not None  # load lays it out
    pre, raw = dataset.preprocessing, dataset.x
    if dataset.texts is not None and pre.text is not None:  # the vocabulary: train rows only
        tokens = pre.text.fit([dataset.texts[i] for i in indices["train"]])
        pre = pre.model_copy(update={"text": tokens, "vocab_size": tokens.vocab_size})
        raw = raw_inputs(dataset, pre)
    if on_disk(raw):  # streamed: statistics from chunks; each batch is transformed as read
        fitted, x = fit_streamed(pre, raw, indices["train"]), raw
    else:
        fitted = pre.fit(raw, indices["train"]).fit_targets(dataset.y, indices["train"])
        x = fitted.transform(raw, overwrite=True)  # `load` made this x: ours to change
    y = fitted.scale_targets(dataset.y)
    done = replace(dataset, x=x, y=y, preprocessing=fitted, warnings=warnings)
    return replace(done, vocab_size=fitted.vocab_size), indices


def raw_inputs(
    dataset: Dataset, pre: Preprocessing, rows: NDArray[np.int64] | None = None
) -> NDArray[np.float32]:
    """The raw inputs of `rows` (default: all) of a loaded dataset as `pre` encodes them:
    a text's rows as token ids of its fitted vocabulary, others as they are."""
    if dataset.texts is None or pre.text is None:
        return dataset.x if rows is None else dataset.x[rows]
    texts = dataset.texts if rows is None else [dataset.texts[i] for i in rows]
    return pre.text.ids(texts)


IN_PLACE_BYTES = 64 * 2**20  # data above this is rearranged in place, not copied


def take_splits(
    x: NDArray[np.float32], indices: dict[str, NDArray[np.int64]]
) -> dict[str, NDArray[np.float32]]:
    """The rows of each split of `x`, in the order of its indices.

    Data above IN_PLACE_BYTES is rearranged in place (x's rows then hold the train rows,
    then val, then test: each split a view), so the splits hold the data once rather than
    beside a gathered copy of it; `x` must be the caller's to change. Rows of under 256
    bytes are gathered as copies unless a copy would not fit, since rearranging moves one
    row at a time."""
    import numpy as np

    from nncli.inputs import available_memory

    order = np.concatenate(list(indices.values()))
    whole = len(order) == len(x) and bool(np.all(np.bincount(order, minlength=len(x)) == 1))
    free = available_memory()
    row_bytes = x.nbytes // max(1, len(x))
    cramped = free is not None and 2 * x.nbytes > free
    if not whole or x.nbytes < IN_PLACE_BYTES or (row_bytes < 256 and not cramped):
        return {name: x[idx] for name, idx in indices.items()}
    permute_rows(x, order)
    out, start = {}, 0
    for name, idx in indices.items():
        out[name] = x[start : start + len(idx)]
        start += len(idx)
    return out


def permute_rows(x: NDArray[Any], order: NDArray[np.int64]) -> None:
    """x[:] = x[order] in place, for a permutation `order`, with one row of extra memory:
    each cycle of the permutation is followed once, row by row."""
    import numpy as np

    to = order.tolist()
    done = np.zeros(len(to), dtype=bool)
    spare = np.empty_like(x[0])
    for start in range(len(to)):
        if done[start] or to[start] == start:
            continue
        spare[...] = x[start]
        j = start
        while True:
            done[j] = True
            k = to[j]
            if k == start:
                x[j] = spare
                break
            x[j] = x[k]
            j = k
