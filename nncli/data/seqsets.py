"""Generated sequence sets for lessons and tests (numpy only, seeded): noisy sines to
forecast, an order of two markers to remember, and short sentences whose sentiment a word
(or `not` before it) decides."""

from __future__ import annotations

import math

from pydantic import Field

from nncli.data import DataParams, Dataset, Targets, check_generated, datasets, finite32
from nncli.data.sequences import Series
from nncli.data.text import text_dataset
from nncli.data.timeseries import SeriesSplit, series_dataset


class Sines(DataParams):
    """A sum of sines with Gaussian noise, one value per step."""

    n_steps: int = Field(default=1000, ge=2, description="length of the series")
    periods: list[float] = Field(default=[20.0, 50.0], min_length=1, description="steps per cycle")
    noise: float = Field(default=0.1, ge=0, description="standard deviation of the noise")
    window: int = Field(default=20, ge=1, description="past steps in each sample")
    horizon: int = Field(default=1, ge=1, description="the target is this many steps ahead")
    standardize: bool = Field(default=True, description="per column, from the train part")
    split: SeriesSplit = SeriesSplit(val=0.1, test=0.2)


@datasets.register("sines", params=Sines, info=Targets("regression", 1))
def sines(p: Sines, seed: int) -> Dataset:
    """Noisy sines (random phases) to forecast `horizon` steps ahead from `window` steps."""
    import numpy as np

    check_generated(p, p.n_steps * (p.window + 2))
    rng = np.random.default_rng(seed)
    t = np.arange(p.n_steps, dtype=np.float64)
    phases = rng.uniform(0, 2 * math.pi, size=len(p.periods))
    y = sum(
        np.sin(2 * math.pi * t / period + phase)
        for period, phase in zip(p.periods, phases, strict=True)
    )
    y = np.asarray(y) + rng.normal(scale=p.noise, size=p.n_steps)
    finite32(p, y)
    values = y[:, None].astype(np.float32)
    series = Series(columns=["y"], window=p.window, horizon=p.horizon)
    return series_dataset(values, values, series, p.split, ["y"], "data.sines")


class MarkerOrder(DataParams):
    """Sequences of random symbols holding two markers once each."""

    n_samples: int = Field(default=1000, ge=4)
    length: int = Field(default=20, ge=2, description="steps per sequence")
    n_symbols: int = Field(default=8, ge=1, description="distinct filler symbols")


@datasets.register("marker_order", params=MarkerOrder, info=Targets("classification", 2))
def marker_order(p: MarkerOrder, seed: int) -> Dataset:
    """Token ids (2: marker A, 3: marker B, 4..: fillers); the class says which marker
    comes first, so a model must remember the first it meets until the second."""
    import numpy as np

    check_generated(p, p.n_samples * p.length)
    rng = np.random.default_rng(seed)
    x = rng.integers(4, 4 + p.n_symbols, size=(p.n_samples, p.length))
    where = np.argsort(rng.random((p.n_samples, p.length)), axis=1)[:, :2]  # two distinct steps
    rows = np.arange(p.n_samples)
    x[rows, where[:, 0]], x[rows, where[:, 1]] = 2, 3
    y = (where[:, 1] < where[:, 0]).astype(np.int64)  # 1: B before A
    return Dataset(
        x.astype(np.float32),
        y,
        "classification",
        ["a_first", "b_first"],
        feature_names=[f"step{i + 1}" for i in range(p.length)],
        vocab_size=4 + p.n_symbols,
    )


_GOOD = ["good", "great", "fine", "lovely", "superb", "pleasant"]
_BAD = ["bad", "awful", "poor", "boring", "terrible", "dull"]
_FILL = ["the", "film", "was", "really", "quite", "story", "and", "plot", "very", "it"]


class TextSentiment(DataParams):
    """Short generated sentences, positive or negative."""

    n_samples: int = Field(default=600, ge=4)
    words: int = Field(default=6, ge=1, description="filler words per sentence")
    negation: float = Field(
        default=0.3, ge=0, le=1, description="share with 'not' before it (and after it)"
    )
    max_length: int = Field(default=12, ge=2, description="tokens per row: cut or padded")


@datasets.register("text_sentiment", params=TextSentiment, info=Targets("classification", 2))
def text_sentiment(p: TextSentiment, seed: int) -> Dataset:
    """Filler words around one sentiment word (good or bad); `not` before it flips the label,
    and as many sentences have a `not` after it that flips nothing, so the order of the
    words matters. Word tokens, the vocabulary from the train split (as `source: text`)."""
    import numpy as np

    from nncli.data.sequences import Tokens

    check_generated(p, p.n_samples * (p.words + 3))
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(p.n_samples):
        words = list(rng.choice(_FILL, size=p.words))
        good = bool(rng.random() < 0.5)
        word = str(rng.choice(_GOOD if good else _BAD))
        negated = bool(rng.random() < p.negation)
        at = int(rng.integers(0, p.words + 1))
        words[at:at] = ["not", word] if negated else [word]
        if not negated and rng.random() < p.negation:  # a `not` that negates no sentiment:
            words.insert(at + 1, "not")  # its presence alone says nothing, its place does
        texts.append(" ".join(words))
        labels.append(int(good != negated))
    tokens = Tokens(column="text", tokenizer="word", max_length=p.max_length)
    y = np.asarray(labels, dtype=np.int64)
    return text_dataset(texts, y, "classification", tokens, ["negative", "positive"], "label")
