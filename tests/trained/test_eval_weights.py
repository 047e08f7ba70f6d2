"""`nncli eval` of a run trained with class weights scores its loss with the weights it
trained with: `balanced` ones are those computed from the train split, kept with the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.runs.files import PREPROCESSING

runner = CliRunner()


def _run(folder: Path, loss: str, weight: str, classes: tuple[int, ...]) -> Path:
    """A run on imbalanced classes (70%, 20%, 10% where three)."""
    rng = np.random.default_rng(0)
    counts = [70, 20, 10][: len(classes)] if len(classes) == 3 else [80, 20]
    y = np.repeat(classes, counts)
    x = rng.normal(size=(len(y), 2)) + y[:, None]
    rows = "\n".join(f"{a:.4f},{b:.4f},{c}" for (a, b), c in zip(x, y, strict=True))
    (folder / "d.csv").write_text("a,b,y\n" + rows + "\n")
    out = "dense: 3" if loss == "cross_entropy" else "dense: 1"
    (folder / "exp.yaml").write_text(
        "data: {source: csv, path: d.csv, target: y, split: {val: 0.2, test: 0.3}}\n"
        f"model: {{layers: [dense: 8, relu, {out}]}}\n"
        f"loss: {{name: {loss}, weight: {weight}}}\n"
        "train: {epochs: 3, batch_size: 16, device: cpu}\n"
    )
    args = ["train", str(folder / "exp.yaml"), "--runs-dir", str(folder / "runs"), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def _eval_loss(run: Path, *args: str) -> float:
    result = runner.invoke(app, ["eval", str(run), "-f", "json", *args])
    assert result.exit_code == 0, result.output
    return float({r["metric"]: r["value"] for r in json.loads(result.stdout)}["loss"])


@pytest.mark.parametrize(
    ("loss", "classes"), [("cross_entropy", (0, 1, 2)), ("bce_with_logits", (0, 1))]
)
def test_eval_of_a_balanced_run_repeats_its_final_test_loss(
    tmp_path: Path, loss: str, classes: tuple[int, ...]
) -> None:
    run = _run(tmp_path, loss, "balanced", classes)
    final = json.loads((run / "run.json").read_text())["final"]
    assert _eval_loss(run) == pytest.approx(final["test_loss"], rel=1e-5)
    assert _eval_loss(run, "--split", "val") == pytest.approx(final["val_loss"], rel=1e-5)
    stored = json.loads((run / PREPROCESSING).read_text())["loss_weight"]
    # the train split's 49 rows: n / (classes * count) per class, count(0)/count(1) for bce
    assert len(stored) == (3 if loss == "cross_entropy" else 1)
    assert all(w > 0 for w in stored) and len(set(stored)) == len(stored)


def test_a_balanced_run_without_stored_weights_computes_them_from_its_train_split(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, "cross_entropy", "balanced", (0, 1, 2))
    final = json.loads((run / "run.json").read_text())["final"]
    stored = json.loads((run / PREPROCESSING).read_text())
    del stored["loss_weight"]  # as an nncli from before loss_weight wrote it
    (run / PREPROCESSING).write_text(json.dumps(stored))
    assert _eval_loss(run) == pytest.approx(final["test_loss"], rel=1e-5)


def test_a_run_with_listed_weights_keeps_them(tmp_path: Path) -> None:
    run = _run(tmp_path, "cross_entropy", "[1.0, 3.0, 6.0]", (0, 1, 2))
    final = json.loads((run / "run.json").read_text())["final"]
    assert _eval_loss(run) == pytest.approx(final["test_loss"], rel=1e-5)
    assert json.loads((run / PREPROCESSING).read_text())["loss_weight"] is None
