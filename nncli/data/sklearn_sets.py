"""Real data sets bundled with scikit-learn (no download) and its generators; scikit-learn is
imported only when one of these is built."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nncli.data import (
    ArrayParams,
    Dataset,
    Scale,
    Targets,
    check_generated,
    datasets,
    finite32,
)
from nncli.errors import NncliError

SKLEARN = ("sklearn.datasets",)  # what building one of these imports (~0.8 s)


class Tabular(ArrayParams):
    """A bundled table: standardised by default."""


class Digits(ArrayParams):
    scale: Scale | None = Field(
        default=1 / 16, gt=0, description="pixels are 0..16; the default maps them to 0..1"
    )
    standardize: bool = Field(default=False, description="per-pixel statistics of the train split")


@datasets.register("digits", params=Digits, info=Targets("classification", 10), imports=SKLEARN)
def digits(p: Digits, seed: int) -> Dataset:
    """1797 handwritten digits, 8x8 pixels (flat; shape: [1, 8, 8] for conv layers)."""
    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    names = [f"pixel{i}" for i in range(64)]
    return Dataset(
        bunch.data.astype(np.float32),
        bunch.target.astype(np.int64),
        "classification",
        [str(c) for c in range(10)],
        target_names=["digit"],
        feature_names=names,
    )


def _bunch(bunch: Any, target: str, classes: list[str] | None, regression: bool = False) -> Dataset:
    import numpy as np

    if regression:
        return Dataset(
            bunch.data.astype(np.float32),
            bunch.target.astype(np.float32).reshape(len(bunch.target), 1),
            "regression",
            target_names=[target],
            feature_names=[str(n) for n in bunch.feature_names],
        )
    return Dataset(
        bunch.data.astype(np.float32),
        bunch.target.astype(np.int64),
        "classification",
        classes,
        target_names=[target],
        feature_names=[str(n) for n in bunch.feature_names],
    )


@datasets.register("iris", params=Tabular, info=Targets("classification", 3), imports=SKLEARN)
def iris(p: Tabular, seed: int) -> Dataset:
    """Fisher's iris: 150 flowers, 4 measurements, 3 species."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    return _bunch(bunch, "species", [str(n) for n in bunch.target_names])


@datasets.register("wine", params=Tabular, info=Targets("classification", 3), imports=SKLEARN)
def wine(p: Tabular, seed: int) -> Dataset:
    """178 Italian wines, 13 chemical measurements, 3 cultivars."""
    from sklearn.datasets import load_wine

    bunch = load_wine()
    return _bunch(bunch, "cultivar", [str(n) for n in bunch.target_names])


@datasets.register(
    "breast_cancer", params=Tabular, info=Targets("classification", 2), imports=SKLEARN
)
def breast_cancer(p: Tabular, seed: int) -> Dataset:
    """Wisconsin breast cancer: 569 tumours, 30 features, malignant or benign."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return _bunch(bunch, "diagnosis", [str(n) for n in bunch.target_names])


@datasets.register("diabetes", params=Tabular, info=Targets("regression", 1), imports=SKLEARN)
def diabetes(p: Tabular, seed: int) -> Dataset:
    """442 diabetes patients, 10 measurements; target: disease progression a year later.

    The measurements are scikit-learn's unscaled ones (age in years, ...), as a user's new
    rows would hold them; standardisation is nncli's."""
    from sklearn.datasets import load_diabetes

    return _bunch(load_diabetes(scaled=False), "progression", None, regression=True)


class MakeClassification(ArrayParams):
    n_samples: int = Field(default=1000, ge=4)
    n_features: int = Field(default=20, ge=1)
    n_informative: int = Field(default=2, ge=1)
    n_redundant: int = Field(default=2, ge=0)
    n_classes: int = Field(default=2, ge=2)
    n_clusters_per_class: int = Field(default=2, ge=1)
    class_sep: float = Field(default=1.0, gt=0)
    flip_y: float = Field(default=0.01, ge=0, le=1, description="share of labels randomised")


def _sklearn(entry: str, make: Any, **kwargs: Any) -> Any:
    try:
        return make(**kwargs)
    except ValueError as exc:  # combinations its parameters cannot satisfy
        raise NncliError(f"data ({entry}): {exc}") from None


@datasets.register(
    "make_classification",
    params=MakeClassification,
    info=Targets("classification", "n_classes"),
    imports=SKLEARN,
)
def make_classification(p: MakeClassification, seed: int) -> Dataset:
    """scikit-learn's classification generator: clusters on a hypercube's vertices."""
    import numpy as np
    from sklearn.datasets import make_classification as make

    params = p.model_dump(exclude={"source", "split", "shape", "scale", "standardize", "augment"})
    check_generated(p, p.n_samples * p.n_features)
    x, y = _sklearn("make_classification", make, random_state=seed, **params)
    finite32(p, x)
    names = [f"class{c}" for c in range(p.n_classes)]
    return Dataset(x.astype(np.float32), y.astype(np.int64), "classification", names, ["y"])


class MakeRegression(ArrayParams):
    n_samples: int = Field(default=1000, ge=2)
    n_features: int = Field(default=10, ge=1)
    n_informative: int = Field(default=10, ge=1)
    n_targets: int = Field(default=1, ge=1)
    noise: float = Field(default=0.0, ge=0, description="standard deviation of y's noise")
    bias: float = 0.0


@datasets.register(
    "make_regression",
    params=MakeRegression,
    info=Targets("regression", "n_targets"),
    imports=SKLEARN,
)
def make_regression(p: MakeRegression, seed: int) -> Dataset:
    """scikit-learn's regression generator: a random linear model of some features."""
    import numpy as np
    from sklearn.datasets import make_regression as make

    params = p.model_dump(exclude={"source", "split", "shape", "scale", "standardize", "augment"})
    check_generated(p, (p.n_samples + p.n_targets) * (p.n_features + p.n_targets))
    x, y = _sklearn("make_regression", make, random_state=seed, **params)
    finite32(p, x, y)
    y = np.asarray(y, dtype=np.float32).reshape(len(x), p.n_targets)
    targets = ["y"] if p.n_targets == 1 else [f"y{i + 1}" for i in range(p.n_targets)]
    return Dataset(x.astype(np.float32), y, "regression", target_names=targets)


class MakeMultilabel(ArrayParams):
    n_samples: int = Field(default=1000, ge=2)
    n_features: int = Field(default=20, ge=1)
    n_classes: int = Field(default=5, ge=2, description="number of labels")
    n_labels: int = Field(default=2, ge=1, description="average labels per sample")


@datasets.register(
    "make_multilabel_classification",
    params=MakeMultilabel,
    info=Targets("multilabel", "n_classes"),
    imports=SKLEARN,
)
def make_multilabel_classification(p: MakeMultilabel, seed: int) -> Dataset:
    """scikit-learn's multi-label generator: word counts of topics; several labels each."""
    import numpy as np
    from sklearn.datasets import make_multilabel_classification as make

    params = p.model_dump(exclude={"source", "split", "shape", "scale", "standardize", "augment"})
    check_generated(p, (p.n_samples + p.n_classes) * p.n_features)
    x, y = _sklearn("make_multilabel_classification", make, random_state=seed, **params)
    names = [f"label{i + 1}" for i in range(p.n_classes)]
    return Dataset(x.astype(np.float32), y.astype(np.int64), "multilabel", names, names)
