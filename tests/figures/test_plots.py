from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from conftest import ROOT

from nncli.figures import curves, predictions, style

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _expected_pixels(figsize: tuple[float, float]) -> tuple[int, int]:
    width, height = figsize
    return round(height * style.DPI), round(width * style.DPI)


def assert_png(path: Path, figsize: tuple[float, float]) -> np.ndarray:
    """``path`` is a PNG whose pixel size matches ``figsize`` at the module's dpi."""
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert image.shape[0] > 0
    assert image.shape[1] > 0
    assert image.shape[:2] == _expected_pixels(figsize)
    assert float(image[..., :3].std()) > 0  # something was drawn, not a blank canvas
    return image


def open_figures() -> list[int]:
    style.use_agg()  # before pyplot is first imported
    import matplotlib.pyplot as plt

    nums: list[int] = plt.get_fignums()
    return nums


@pytest.fixture(autouse=True)
def no_open_figures() -> Iterator[None]:
    assert open_figures() == []
    yield
    assert open_figures() == []


def make_rows(n: int) -> list[dict[str, float]]:
    rows = []
    for epoch in range(1, n + 1):
        rows.append(
            {
                "epoch": float(epoch),
                "train_loss": 1.0 / epoch,
                "val_loss": 1.2 / epoch + 0.05 * (epoch - 3) ** 2 / n,
                "train_accuracy": 1 - 0.5 / epoch,
                "val_accuracy": 0.9 - 0.4 / epoch,
                "lr": 0.1 * 0.9**epoch,
                "time_s": 0.5 * epoch,
            }
        )
    return rows


def test_split_colours() -> None:
    assert style.SPLIT_COLOURS == {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


def test_module_import_does_not_load_matplotlib_or_torch() -> None:
    code = (
        "import sys, nncli.figures.activations, nncli.figures.curves, nncli.figures.predictions, "
        "nncli.figures.style; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib'; "
        "assert 'torch' not in sys.modules, 'torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_plot_curves_writes_loss_and_metrics(tmp_path: Path) -> None:
    out_dir = tmp_path / "plots" / "nested"
    paths = curves.plot_curves(make_rows(10), ["accuracy"], out_dir, "moons-mlp")
    assert paths == [out_dir / "loss.png", out_dir / "accuracy.png"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["accuracy.png", "loss.png"]
    for path in paths:
        assert_png(path, curves.CURVE_FIGSIZE)


def test_plot_curves_lines_and_best_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One line per present split, train dashed, best held-out epoch marked; test absent."""
    captured = []
    real_save = curves.save

    def spy(fig: object, out: Path) -> Path:
        captured.append((out.name, fig.axes[0]))  # type: ignore[attr-defined]
        return real_save(fig, out)  # type: ignore[arg-type]

    monkeypatch.setattr(curves, "save", spy)
    rows = make_rows(8)
    curves.plot_curves(rows, ["accuracy"], tmp_path, "run")
    axes = dict(captured)
    ax = axes["loss.png"]
    assert ax.get_title() == "run: loss"
    assert ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "loss"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) >= {"train", "validation"}
    assert "test" not in lines
    assert lines["train"].get_color() == style.SPLIT_COLOURS["train"]
    assert lines["train"].get_linestyle() == "--"
    assert lines["validation"].get_color() == style.SPLIT_COLOURS["val"]
    assert lines["validation"].get_linestyle() == "-"
    best = [line for label, line in lines.items() if label.startswith("best validation")]
    assert len(best) == 1
    val_loss = [r["val_loss"] for r in rows]
    best_epoch = int(np.argmin(val_loss)) + 1
    assert list(best[0].get_xdata()) == [best_epoch]
    # accuracy is maximised
    acc_lines = {line.get_label(): line for line in axes["accuracy.png"].get_lines()}
    (acc_best,) = [ln for lb, ln in acc_lines.items() if lb.startswith("best validation")]
    assert list(acc_best.get_xdata()) == [int(np.argmax([r["val_accuracy"] for r in rows])) + 1]


def test_plot_curves_skips_absent_splits_and_metrics(tmp_path: Path) -> None:
    rows = [
        {"epoch": 1.0, "train_loss": 0.9, "test_loss": 0.95, "test_mae": 0.4},
        {"epoch": 2.0, "train_loss": 0.5, "test_loss": 0.7, "test_mae": 0.3},
    ]
    paths = curves.plot_curves(rows, ["mae", "accuracy"], tmp_path, "reg")
    # no *_accuracy column at all: no accuracy.png
    assert [p.name for p in paths] == ["loss.png", "mae.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "mae.png"]
    for path in paths:
        assert_png(path, curves.CURVE_FIGSIZE)


def test_plot_curves_single_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xlims = []
    real_save = curves.save

    def spy(fig: object, out: Path) -> Path:
        xlims.append(fig.axes[0].get_xlim())  # type: ignore[attr-defined]
        return real_save(fig, out)  # type: ignore[arg-type]

    monkeypatch.setattr(curves, "save", spy)
    paths = curves.plot_curves(make_rows(1), ["accuracy"], tmp_path, "one epoch")
    assert [p.name for p in paths] == ["loss.png", "accuracy.png"]
    for path in paths:
        assert_png(path, curves.CURVE_FIGSIZE)
    assert xlims == [(0.0, 2.0), (0.0, 2.0)]  # the lone epoch sits mid-axis, integer ticks


def test_plot_curves_accepts_csv_strings(tmp_path: Path) -> None:
    """Rows read with csv.DictReader hold strings, sometimes empty."""
    rows = [
        {"epoch": "1", "train_loss": "0.9", "val_loss": ""},
        {"epoch": "2", "train_loss": "0.6", "val_loss": "0.7"},
    ]
    paths = curves.plot_curves(rows, [], tmp_path, "csv")  # type: ignore[arg-type]
    assert [p.name for p in paths] == ["loss.png"]
    assert_png(paths[0], curves.CURVE_FIGSIZE)


def make_blobs(rng: np.random.Generator, n_per_class: int = 40) -> tuple[np.ndarray, np.ndarray]:
    centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    x = np.concatenate([c + rng.normal(scale=0.7, size=(n_per_class, 2)) for c in centres])
    y = np.repeat(np.arange(3), n_per_class)
    return x, y


def nearest_centre_probs(grid: np.ndarray) -> np.ndarray:
    centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    d = ((grid[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    e = np.exp(-d)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


@pytest.mark.parametrize("form", ["probabilities", "indices"])
def test_plot_decision_boundary(tmp_path: Path, form: str) -> None:
    x, y = make_blobs(np.random.default_rng(0))
    calls: list[np.ndarray] = []

    def predict(grid: np.ndarray) -> np.ndarray:
        calls.append(grid)
        probs = nearest_centre_probs(grid)
        if form == "indices":
            labels: np.ndarray = probs.argmax(axis=1).astype(np.int64)
            return labels
        return probs

    out = tmp_path / "sub" / "boundary.png"
    written = predictions.plot_decision_boundary(predict, x, y, ["a", "b", "c"], out, "blobs")
    assert written == out
    assert len(calls) == 1
    grid = calls[0]
    assert grid.ndim == 2
    assert grid.shape[1] == 2
    assert grid.shape[0] >= 100 * 100
    assert grid.dtype == np.float32
    # the grid covers every point, with a margin
    assert (grid.min(axis=0) < x.min(axis=0)).all()
    assert (grid.max(axis=0) > x.max(axis=0)).all()
    assert_png(out, predictions.BOUNDARY_FIGSIZE)


def test_plot_decision_boundary_binary_sigmoid(tmp_path: Path) -> None:
    """(M, 1) probabilities are thresholded at 0.5 rather than argmax'd to all zeros."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 2))
    y = (x[:, 0] > 0).astype(np.int64)

    def predict(grid: np.ndarray) -> np.ndarray:
        probs: np.ndarray = 1 / (1 + np.exp(-4 * grid[:, :1]))
        return probs

    out = predictions.plot_decision_boundary(
        predict, x, y, ["neg", "pos"], tmp_path / "b.png", "bin"
    )
    assert_png(out, predictions.BOUNDARY_FIGSIZE)


def test_plot_decision_boundary_rejects_bad_predict_shape(tmp_path: Path) -> None:
    x = np.zeros((4, 2))
    y = np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match="predict returned shape"):
        predictions.plot_decision_boundary(
            lambda g: np.zeros(3), x, y, ["a"], tmp_path / "bad.png", "bad"
        )
    assert not (tmp_path / "bad.png").exists()


def test_plot_confusion_matrix(tmp_path: Path) -> None:
    cm = np.array([[10, 2, 0], [1, 12, 3], [0, 4, 9]])
    out = tmp_path / "cm" / "confusion.png"
    assert predictions.plot_confusion_matrix(cm, ["cat", "dog", "bird"], out, "cm") == out
    assert_png(out, predictions.confusion_figsize(3))


def test_plot_confusion_matrix_rejects_non_square(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="square"):
        predictions.plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "x.png", "x")


@pytest.mark.parametrize("n_labels", [1, 4, 30, 100])
def test_plot_label_scores(tmp_path: Path, n_labels: int) -> None:
    scores = [
        {"precision": 0.9, "recall": i / n_labels, "f1": 0.5, "support": 10 + i}
        for i in range(n_labels)
    ]
    out = tmp_path / "labels" / "label_scores.png"
    assert predictions.plot_label_scores(scores, ["spam", "urgent"], out, "labels") == out
    assert_png(out, predictions.label_scores_figsize(n_labels))


def test_plot_label_scores_needs_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no labels"):
        predictions.plot_label_scores([], [], tmp_path / "x.png", "x")


@pytest.mark.parametrize("shape", [(60,), (60, 1)])
def test_plot_predictions(tmp_path: Path, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    y_true = rng.normal(size=shape)
    y_pred = y_true + rng.normal(scale=0.2, size=shape)
    out = tmp_path / "pred" / "predictions.png"
    assert predictions.plot_predictions(y_true, y_pred, out, "regression") == out
    assert_png(out, predictions.PREDICTIONS_FIGSIZE)


def test_r2_score() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert predictions.r2_score(y, y) == pytest.approx(1.0)
    assert predictions.r2_score(y, np.full(4, y.mean())) == pytest.approx(0.0)
    assert np.isnan(predictions.r2_score(np.ones(3), np.ones(3)))


def test_plot_predictions_rejects_size_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="equal in size"):
        predictions.plot_predictions(np.zeros(3), np.zeros(4), tmp_path / "p.png", "p")


def test_many_calls_leave_no_figures(tmp_path: Path) -> None:
    """22 figures: more than 20 left open would warn, an error under filterwarnings=error."""
    rows = make_rows(3)
    for i in range(11):
        curves.plot_curves(rows, ["accuracy"], tmp_path / str(i), "loop")
    assert open_figures() == []


def test_plot_fit_draws_the_points_and_curve_in_the_units_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The points as given, the curve over their span, the axes named after the columns."""
    captured = []
    real_save = predictions.save

    def spy(fig: object, out: Path) -> Path:
        captured.append(fig.axes[0])  # type: ignore[attr-defined]
        return real_save(fig, out)  # type: ignore[arg-type]

    monkeypatch.setattr(predictions, "save", spy)
    x = np.linspace(10.0, 20.0, 11)[:, None]
    grids = []

    def predict(grid: np.ndarray) -> np.ndarray:
        grids.append(grid)
        return 3 * grid - 5

    out = tmp_path / "fit.png"
    assert (
        predictions.plot_fit({"train": (x, 3 * x - 5)}, predict, out, "r", ("area", "price")) == out
    )
    assert_png(out, predictions.FIT_FIGSIZE)
    (ax,) = captured
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("area", "price")
    (grid,) = grids
    assert (grid.shape, grid.dtype) == ((predictions.GRID_RESOLUTION, 1), np.float32)
    assert (grid.min(), grid.max()) == (pytest.approx(9.5), pytest.approx(20.5))
    (curve,) = ax.get_lines()
    assert np.allclose(curve.get_ydata(), 3 * curve.get_xdata() - 5, atol=1e-4)
    (points,) = ax.collections
    assert np.allclose(points.get_offsets(), np.c_[x, 3 * x - 5])
