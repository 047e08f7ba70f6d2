from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from conftest import TINY
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.figures import activations, style
from nncli.layers import activations as registered_activations

LINE = """\
name: line
seed: 3
data: {source: linear, n_samples: 60, split: {test: 0.25}}
model: {layers: [dense: 1]}
loss: mse
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 5, batch_size: 16, device: cpu}
"""

LABELS = """\
name: labels
seed: 3
data: {source: make_multilabel_classification, n_samples: 120, n_classes: 3, split: {test: 0.25}}
model: {layers: [dense: 3, sigmoid]}
loss: bce
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 16, device: cpu}
metrics: [accuracy]
"""


def pixels(path: Path) -> tuple[int, ...]:
    image = matplotlib.image.imread(path)
    assert float(image[..., :3].std()) > 0  # something was drawn
    return tuple(image.shape[:2])


# --- nncli plot activations ----------------------------------------------------------------


def test_plot_activations_writes_one_figure(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "figs" / "act.png"
    result = runner.invoke(app, ["plot", "activations", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    rows = -(-len(registered_activations()) // activations.ACTIVATIONS_COLUMNS)
    width = activations.ACTIVATION_PANEL[0] * activations.ACTIVATIONS_COLUMNS
    height = activations.ACTIVATION_PANEL[1] * rows + 0.5
    assert pixels(out) == (round(height * style.DPI), round(width * style.DPI))


def test_plot_activations_defaults_to_the_current_folder(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["plot", "activations"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "activations.png\n"
    assert (tmp_path / "activations.png").is_file()


def test_every_activation_has_a_titled_gridded_panel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    real_save = activations.save

    def spy(fig: object, out: Path) -> Path:
        seen.append(fig)
        return real_save(fig, out)  # type: ignore[arg-type]

    monkeypatch.setattr(activations, "save", spy)
    activations.plot_activations(activations.activation_curves(), tmp_path / "a.png")
    (fig,) = seen
    axes = [ax for ax in fig.axes if ax.get_visible()]  # type: ignore[attr-defined]
    assert [ax.get_title().split("\n")[0] for ax in axes] == registered_activations()
    for ax in axes:
        styles = [line.get_linestyle() for line in ax.get_lines() if line.get_label() != ""]
        assert styles[-2:] == ["-", "--"], ax.get_title()  # the function, its derivative
        assert ax.xaxis.get_gridlines()[0].get_visible()
        assert ax.get_xlim() == (-5.0, 5.0)


def test_activation_curves_and_their_derivatives() -> None:
    curves = {c.name: c for c in activations.activation_curves()}
    assert list(curves) == registered_activations()
    x = curves["sigmoid"].x
    sigmoid = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(curves["sigmoid"].y, sigmoid, atol=1e-6)
    np.testing.assert_allclose(curves["sigmoid"].dy, sigmoid * (1 - sigmoid), atol=1e-4)
    np.testing.assert_allclose(curves["tanh"].dy, 1 - np.tanh(x) ** 2, atol=1e-3)
    np.testing.assert_allclose(curves["identity"].dy, 1.0)
    # step: flat on both sides (the true derivative, not the straight-through one), and
    # none at the jump
    step = curves["step"]
    assert np.isnan(step.dy).sum() == 2
    assert np.nanmax(np.abs(step.dy)) < 1e-9
    # softmax of one number would be 1; it is drawn as the first of two outputs
    assert curves["softmax"].note == "first output, input (x, 0)"
    np.testing.assert_allclose(curves["softmax"].y, sigmoid, atol=1e-6)
    assert curves["relu"].note == ""


def test_plot_activations_needs_curves(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no activations"):
        activations.plot_activations([], tmp_path / "none.png")


# --- nncli plot RUN -------------------------------------------------------------------------


def trained(runner: CliRunner, path: Path, runs: Path) -> Path:
    result = runner.invoke(app, ["train", str(path), "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


@pytest.mark.parametrize(
    ("text", "figures"),
    [
        (TINY, ["loss", "accuracy", "f1", "confusion_matrix", "decision_boundary", "data"]),
        (LINE, ["loss", "mae", "rmse", "r2", "predictions", "fit"]),
        (LABELS, ["loss", "accuracy", "label_scores"]),
    ],
    ids=["binary", "regression", "multilabel"],
)
def test_plot_run_draws_the_same_figures_again(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, text: str, figures: list[str]
) -> None:
    run = trained(runner, write(text), tmp_path / "runs")
    original = tmp_path / "original"
    shutil.copytree(run / "plots", original)
    assert sorted(p.stem for p in original.iterdir()) == sorted(figures)
    shutil.rmtree(run / "plots")

    result = runner.invoke(app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    *written, report = [Path(line) for line in result.stdout.splitlines()]
    assert report == run / "report.html"  # rewritten with the figures (tests/report/)
    assert [p.stem for p in written] == figures
    assert all(p.parent == run / "plots" for p in written)
    # same config, seed, split and weights: the very same pictures
    for path in written:
        assert path.read_bytes() == (original / path.name).read_bytes(), path.name


def test_plot_run_into_another_folder(runner: CliRunner, tiny: Path, tmp_path: Path) -> None:
    run = trained(runner, tiny, tmp_path / "runs")
    before = {p.name: p.read_bytes() for p in (run / "plots").iterdir()}
    out = tmp_path / "slides"
    result = runner.invoke(app, ["plot", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(before)
    assert {p.name: p.read_bytes() for p in (run / "plots").iterdir()} == before


def test_plot_refuses_a_folder_that_is_no_run(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plot", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == f"error {tmp_path} is not a run folder: it has no run.json\n"


def test_plot_needs_the_last_checkpoint(runner: CliRunner, tiny: Path, tmp_path: Path) -> None:
    run = trained(runner, tiny, tmp_path / "runs")
    (run / "checkpoints" / "last.pt").unlink()
    result = runner.invoke(app, ["plot", str(run)])
    assert result.exit_code == 2
    assert "checkpoints/last.pt does not exist; the run saved no checkpoint" in result.stderr


def test_plot_refuses_weights_that_do_not_fit_the_config(
    runner: CliRunner, tiny: Path, tmp_path: Path
) -> None:
    run = trained(runner, tiny, tmp_path / "runs")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("units: 8", "units: 5"))
    result = runner.invoke(app, ["plot", str(run)])
    assert result.exit_code == 2
    assert f"error {run}/checkpoints/last.pt does not fit the model of {config}" in result.stderr


def test_plot_run_passes_the_best_epoch_run_json_records(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import nncli.trained.replot
    from nncli.engine.fit import FitResult

    run = trained(runner, tiny, tmp_path / "runs")
    info = json.loads((run / "run.json").read_text())
    assert info["best_checkpoint"]["epoch"] in (1, 2, 3)  # what training writes
    info["best_checkpoint"]["epoch"] = 2  # not the last epoch (3), whatever this run's was
    (run / "run.json").write_text(json.dumps(info))
    seen: list[FitResult] = []

    def spy(folder: Path, p: object, result: FitResult) -> list[Path]:
        seen.append(result)
        return []

    monkeypatch.setattr(nncli.trained.replot, "write_plots", spy)
    result = runner.invoke(app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    (fit,) = seen
    assert len(fit.rows) == 3
    assert fit.best_epoch == 2
