"""Built-in generated data sets (numpy only: scikit-learn is not imported for these). The
ones scikit-learn also makes take its defaults, so a lesson written with make_circles,
make_moons or make_blobs gets the same problem from the same settings."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from nncli.data import (
    DataParams,
    Dataset,
    Split,
    Targets,
    check_generated,
    datasets,
    finite32,
)

if TYPE_CHECKING:
    import numpy as np


def _classification(p: DataParams, x: np.ndarray, y: np.ndarray, names: list[str]) -> Dataset:
    import numpy as np

    finite32(p, x)
    return Dataset(x.astype(np.float32), y.astype(np.int64), "classification", names)


class Circles(DataParams):
    """scikit-learn's make_circles."""

    n_samples: int = Field(default=100, ge=4)
    noise: float = Field(default=0.0, ge=0, description="standard deviation of the noise")
    factor: float = Field(default=0.8, gt=0, lt=1, description="inner radius / outer radius")


@datasets.register("circles", params=Circles, info=Targets("classification", 2))
def circles(p: Circles, seed: int) -> Dataset:
    """Two concentric circles in 2-D (class 1 inside); not linearly separable."""
    import numpy as np

    check_generated(p, p.n_samples * 2)
    rng = np.random.default_rng(seed)
    n_out = p.n_samples // 2
    n_in = p.n_samples - n_out
    t_out = np.linspace(0, 2 * math.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * math.pi, n_in, endpoint=False)
    x = np.concatenate(
        [np.c_[np.cos(t_out), np.sin(t_out)], p.factor * np.c_[np.cos(t_in), np.sin(t_in)]]
    )
    y = np.r_[np.zeros(n_out), np.ones(n_in)]
    x += rng.normal(scale=p.noise, size=x.shape)
    return _classification(p, x, y, ["outer", "inner"])


class Moons(DataParams):
    """scikit-learn's make_moons."""

    n_samples: int = Field(default=100, ge=4)
    noise: float = Field(default=0.0, ge=0, description="standard deviation of the noise")


@datasets.register("moons", params=Moons, info=Targets("classification", 2))
def moons(p: Moons, seed: int) -> Dataset:
    """Two interleaving half circles in 2-D."""
    import numpy as np

    check_generated(p, p.n_samples * 2)
    rng = np.random.default_rng(seed)
    n_a = p.n_samples // 2
    n_b = p.n_samples - n_a
    t_a = np.linspace(0, math.pi, n_a)
    t_b = np.linspace(0, math.pi, n_b)
    x = np.concatenate([np.c_[np.cos(t_a), np.sin(t_a)], np.c_[1 - np.cos(t_b), 0.5 - np.sin(t_b)]])
    y = np.r_[np.zeros(n_a), np.ones(n_b)]
    x += rng.normal(scale=p.noise, size=x.shape)
    return _classification(p, x, y, ["upper", "lower"])


class Blobs(DataParams):
    """scikit-learn's make_blobs (`box`: its center_box, as [-box, box])."""

    n_samples: int = Field(default=100, ge=2)
    centers: int = Field(default=3, ge=2, description="number of classes")
    n_features: int = Field(default=2, ge=1)
    cluster_std: float = Field(default=1.0, gt=0)
    box: float = Field(default=10.0, gt=0, description="centres drawn uniformly in [-box, box]")


@datasets.register("blobs", params=Blobs, info=Targets("classification", "centers"))
def blobs(p: Blobs, seed: int) -> Dataset:
    """Gaussian clusters, one class each."""
    import numpy as np

    check_generated(p, (p.n_samples + p.centers) * p.n_features)
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-p.box, p.box, size=(p.centers, p.n_features))
    y = np.arange(p.n_samples) % p.centers
    x = centres[y] + rng.normal(scale=p.cluster_std, size=(p.n_samples, p.n_features))
    return _classification(p, x, y, [f"blob{c}" for c in range(p.centers)])


class Gate(DataParams):
    n_samples: int = Field(default=4, ge=4, description="the 4 corners, repeated (with noise)")
    noise: float = Field(default=0.0, ge=0)
    split: Split = Split(test=0.0)


def _gate(p: Gate, seed: int, truth: np.ndarray) -> Dataset:
    import numpy as np

    check_generated(p, p.n_samples * 2)
    rng = np.random.default_rng(seed)
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    which = np.arange(p.n_samples) % 4
    x = corners[which] + rng.normal(scale=p.noise, size=(p.n_samples, 2)) * (p.noise > 0)
    return _classification(p, x, truth[which], ["0", "1"])


@datasets.register("xor", params=Gate, info=Targets("classification", 2))
def xor(p: Gate, seed: int) -> Dataset:
    """XOR of two bits: not linearly separable (one neuron cannot learn it)."""
    import numpy as np

    return _gate(p, seed, np.array([0, 1, 1, 0]))


@datasets.register("and", params=Gate, info=Targets("classification", 2))
def and_gate(p: Gate, seed: int) -> Dataset:
    """AND of two bits: linearly separable."""
    import numpy as np

    return _gate(p, seed, np.array([0, 0, 0, 1]))


@datasets.register("or", params=Gate, info=Targets("classification", 2))
def or_gate(p: Gate, seed: int) -> Dataset:
    """OR of two bits: linearly separable."""
    import numpy as np

    return _gate(p, seed, np.array([0, 1, 1, 1]))


class Linear(DataParams):
    n_samples: int = Field(default=100, ge=2)
    weights: list[float] = Field(default=[2.0], min_length=1, description="one per feature")
    bias: float = 1.0
    noise: float = Field(default=0.2, ge=0, description="standard deviation of y's noise")
    low: float = -1.0
    high: float = 1.0

    @model_validator(mode="after")
    def _range(self) -> Linear:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


@datasets.register("linear", params=Linear, info=Targets("regression", 1))
def linear(p: Linear, seed: int) -> Dataset:
    """y = w.x + b + noise, x uniform in [low, high]: linear regression's data."""
    import numpy as np

    check_generated(p, p.n_samples * (len(p.weights) + 2))
    rng = np.random.default_rng(seed)
    w = np.asarray(p.weights)
    x = rng.uniform(p.low, p.high, size=(p.n_samples, len(w)))
    y = x @ w + p.bias + rng.normal(scale=p.noise, size=p.n_samples)
    finite32(p, x, y)
    return Dataset(
        x.astype(np.float32), y[:, None].astype(np.float32), "regression", target_names=["y"]
    )
