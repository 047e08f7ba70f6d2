"""The lesson pictures of a run: data.png (2-D inputs), misclassified.png (image
classifiers) and filters.png (conv nets), each written where it applies and only there,
and holding what it says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import EXPERIMENTS, Rows

from nncli.config.spec import load_spec
from nncli.engine.fit import fit
from nncli.engine.inference import predict_classes
from nncli.engine.prepare import Prepared, prepare
from nncli.engine.run_figures import write_plots
from nncli.figures import samples

LESSON = {"data.png", "misclassified.png", "filters.png"}


def _trained(experiment: str, *overrides: str) -> tuple[Prepared, Any]:
    spec = load_spec(EXPERIMENTS / f"{experiment}.yaml", ["train.epochs=1", *overrides])
    p = prepare(spec, "cpu")
    return p, fit(p, Rows())


def _drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The figure each lesson PNG was saved from, by file name."""
    drawn: dict[str, Any] = {}
    real_save = samples.save

    def spy(fig: Any, out: Path) -> Path:
        drawn[out.name] = fig
        return real_save(fig, out)

    monkeypatch.setattr(samples, "save", spy)
    return drawn


@pytest.mark.parametrize(
    ("experiment", "expected"),
    [
        ("circles", {"data.png"}),
        ("diabetes", set()),
        ("iris", set()),
        ("digits_mlp", set()),  # flat 64-value rows: no images, no convolution
        ("digits_lenet", {"misclassified.png", "filters.png"}),
    ],
)
def test_each_lesson_figure_is_written_where_it_applies(
    tmp_path: Path, experiment: str, expected: set[str]
) -> None:
    p, result = _trained(experiment)
    written = write_plots(tmp_path, p, result)
    names = {path.name for path in written}
    assert names & LESSON == expected
    assert {path.name for path in tmp_path.iterdir()} == names


TWO_COLUMNS = """seed: 0
data:
  source: csv
  path: points.csv
  target: label
  standardize: true
  split: {val: 0.2, test: 0.2}
model:
  layers: [{dense: 2}]
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 1, batch_size: 16, device: cpu}
"""


def test_data_is_drawn_in_the_data_units_with_every_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Standardised inputs: the points drawn are each split's raw values (the csv's own),
    one collection per split, and the axes carry the column names."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(100.0, 20.0, 50), rng.normal(-3.0, 0.5, 50)
    rows = "".join(f"{u},{v},{'yes' if u > 100 else 'no'}\n" for u, v in zip(a, b, strict=True))
    (tmp_path / "points.csv").write_text("height,depth,label\n" + rows, encoding="utf-8")
    (tmp_path / "exp.yaml").write_text(TWO_COLUMNS, encoding="utf-8")
    drawn = _drawn(monkeypatch)
    p = prepare(load_spec(tmp_path / "exp.yaml"), "cpu")
    write_plots(tmp_path / "plots", p, fit(p, Rows()))
    ax = drawn["data.png"].axes[0]
    raw = np.column_stack([a, b])
    points = [np.asarray(c.get_offsets()) for c in ax.collections if len(c.get_offsets())]
    assert [len(x) for x in points] == [len(x) for x, _ in p.splits.values()]
    drawn_rows = np.concatenate(points)
    assert np.abs(drawn_rows).max() > 50  # not the standardised inputs
    assert np.allclose(np.sort(drawn_rows, axis=0), np.sort(raw, axis=0), atol=1e-3)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("height", "depth")


def test_the_misclassified_grid_holds_exactly_the_model_s_mistakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = _drawn(monkeypatch)
    p, result = _trained("digits_lenet")
    write_plots(tmp_path, p, result)
    x, y = p.splits["test"]
    predicted = predict_classes(p, x.numpy())
    wrong = np.flatnonzero(predicted != y.numpy())
    assert len(wrong) > 0  # one epoch: plenty of mistakes
    shown = wrong[: samples.MAX_MISCLASSIFIED]
    names = p.task.class_names or [str(c) for c in range(10)]
    ax = drawn["misclassified.png"].axes[0]
    titles = [t.get_text() for t in ax.texts]
    assert titles == [f"{names[y[i]]} -> {names[predicted[i]]}" for i in shown]
    (image,) = ax.get_images()
    pixels = np.asarray(image.get_array().filled(np.nan))  # type: ignore[union-attr]
    rows, cols = samples._grid(len(shown))
    h = w = 8
    top = pixels.shape[0] // rows - h
    pre = p.dataset.preprocessing
    assert pre is not None
    gain, offset = (np.asarray(v).reshape(1, 8, 8) for v in pre.affine())
    for k, i in enumerate(shown):
        r, c = divmod(k, cols)
        cell = pixels[r * (h + top) + top : (r + 1) * (h + top), c * (w + 1) : c * (w + 1) + w]
        assert np.allclose(cell, ((x[i].numpy() - offset) / gain)[0], atol=1e-4)
    assert f"{len(wrong)} of {len(y)} misclassified" in ax.get_title()


def test_the_filters_are_the_first_convolution_s_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = _drawn(monkeypatch)
    p, result = _trained("digits_lenet")
    write_plots(tmp_path, p, result)
    conv = next(m for m in p.model.modules() if isinstance(m, torch.nn.Conv2d))
    weight = conv.weight.detach().numpy().mean(axis=1)  # (6, 3, 3): one input channel
    ax = drawn["filters.png"].axes[0]
    (image,) = ax.get_images()
    pixels = np.asarray(image.get_array().filled(np.nan))  # type: ignore[union-attr]
    rows, cols = samples._grid(len(weight))
    top = pixels.shape[0] // rows - 3
    cells = [
        pixels[r * (3 + top) + top : (r + 1) * (3 + top), c * 4 : c * 4 + 3]
        for r, c in (divmod(k, cols) for k in range(len(weight)))
    ]
    assert np.allclose(np.stack(cells), weight, atol=1e-6)


def test_conv1d_filters_are_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = _drawn(monkeypatch)
    weight = np.arange(2 * 3 * 5, dtype=float).reshape(2, 3, 5)
    samples.plot_filters(weight, tmp_path / "filters.png", "run")
    lines = [line for line in drawn["filters.png"].axes[0].get_lines() if line.get_marker() == "."]
    limit = np.abs(weight.mean(axis=1)).max()
    for i, line in enumerate(lines):
        assert np.allclose(line.get_ydata(), weight[i].mean(axis=0) - 2.5 * limit * i)
    assert len(lines) == 2
