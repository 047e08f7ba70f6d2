"""Data sources: a registry of entries that each produce a Dataset, and seeded splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from nncli.errors import NncliError
from nncli.registry import Params, Registry

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

Kind = Literal["classification", "regression", "multilabel"]
SPLITS = ("train", "val", "test")


class Split(Params):
    """Fractions held out for validation and testing; the rest trains."""

    val: float = Field(default=0.0, ge=0.0, lt=1.0)
    test: float = Field(default=0.2, ge=0.0, lt=1.0)
    stratify: bool = Field(default=True, description="keep class proportions (classification)")

    @model_validator(mode="after")
    def _leave_some_for_training(self) -> Split:
        if self.val + self.test >= 1.0:
            raise ValueError(f"val + test is {self.val + self.test:g}; it must be below 1")
        return self


class DataParams(Params):
    """Parameters every source shares."""

    split: Split = Split()


@dataclass
class Dataset:
    """Samples and targets in memory, with what they mean."""

    x: NDArray[np.float32]  # (N, *sample_shape)
    y: NDArray[np.generic]  # (N,) int class labels, or (N, T) float targets / 0-1 labels
    kind: Kind
    class_names: list[str] | None = None  # classification: the label of each index
    target_names: list[str] | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0


datasets: Registry[Callable[..., Dataset]] = Registry("dataset", key="source", base=DataParams)


def load(params: DataParams, seed: int) -> Dataset:
    """Build the dataset a data section names, with `seed` for anything random."""
    entry = datasets.get(getattr(params, datasets.key))
    return entry.build(params, seed)


def split(dataset: Dataset, spec: Split, seed: int) -> dict[str, NDArray[np.int64]]:
    """Seeded indices of each split present (train always; val/test where fraction > 0).

    Stratified splits take each fraction from every class, so small classes are kept in
    proportion; an empty split is an error that says how to fix it.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(dataset.x)
    fractions = {"val": spec.val, "test": spec.test}
    if spec.stratify and dataset.kind == "classification":
        groups = [np.flatnonzero(dataset.y == c) for c in np.unique(dataset.y)]
    else:
        groups = [np.arange(n)]
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
        if name != "train" and fractions[name] == 0:
            continue
        idx = np.sort(np.concatenate(parts[name])).astype(np.int64)
        if len(idx) == 0:
            fix = (
                "use more samples or a larger fraction"
                if name != "train"
                else "lower data.split.val / data.split.test"
            )
            raise NncliError(f"the {name} split of {n} samples is empty; {fix}")
        out[name] = rng.permutation(idx) if name == "train" else idx
    return out


from nncli.data import generators as _generators  # noqa: E402,F401  (registers the entries)
