"""The course's experiment files reach the results their headers and the README promise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EXPERIMENTS, ROOT, Rows
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config.spec import load_spec
from nncli.engine.fit import fit
from nncli.engine.inference import predict_classes
from nncli.engine.prepare import Prepared, prepare

# the inputs of the logic-gate data sets, in the order their truth tables are written
CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)


def train(name: str) -> tuple[Prepared, list[dict[str, float]]]:
    p = prepare(load_spec(EXPERIMENTS / f"{name}.yaml"), "cpu")
    sink = Rows()
    fit(p, sink)
    return p, sink.rows


def column(rows: list[dict[str, float]], name: str) -> list[float]:
    return [row[name] for row in rows]


def test_linear_regression_learns_the_line() -> None:
    p, rows = train("linear_regression")
    neuron = p.model[0]
    assert isinstance(neuron, torch.nn.Linear)
    assert neuron.weight.item() == pytest.approx(2.0, abs=0.1)
    assert neuron.bias.item() == pytest.approx(1.0, abs=0.1)
    assert rows[-1]["test_r2"] > 0.95
    assert len(rows) == 200


def test_logistic_regression_separates_the_blobs() -> None:
    p, rows = train("logistic_regression")
    assert p.n_params == 3  # one neuron on two inputs
    assert rows[-1]["test_accuracy"] == 1.0
    assert rows[-1]["train_accuracy"] == 1.0


@pytest.mark.parametrize(
    ("name", "truth"), [("perceptron_and", [0, 0, 0, 1]), ("perceptron_or", [0, 1, 1, 1])]
)
def test_the_perceptron_rule_learns_a_separable_gate(name: str, truth: list[int]) -> None:
    p, rows = train(name)
    assert p.n_params == 3
    assert predict_classes(p, CORNERS).tolist() == truth
    # an epoch without mistakes leaves the weights alone: the rule has converged
    assert rows[-1]["train_accuracy"] == 1.0
    assert rows[-1]["train_loss"] == 0.0
    assert rows[0]["train_accuracy"] < 1.0  # it had something to learn


def test_one_neuron_cannot_learn_xor() -> None:
    p, rows = train("xor_perceptron")
    accuracy = column(rows, "train_accuracy")
    assert max(accuracy) <= 0.75
    assert len(set(accuracy)) > 1  # the weights keep moving: they never settle
    assert (predict_classes(p, CORNERS) == [0, 1, 1, 0]).mean() <= 0.75


def test_one_hidden_layer_learns_xor() -> None:
    p, rows = train("xor_mlp")
    assert predict_classes(p, CORNERS).tolist() == [0, 1, 1, 0]
    assert rows[-1]["train_accuracy"] == 1.0


def test_an_mlp_draws_the_moons_boundary() -> None:
    _, rows = train("moons_mlp")
    assert rows[-1]["test_accuracy"] >= 0.97
    assert rows[-1]["test_loss"] < rows[0]["test_loss"] / 4


def test_a_softmax_classifier_separates_four_blobs() -> None:
    p, rows = train("softmax_blobs")
    assert p.task.kind == "multiclass"
    assert p.shapes[-1] == (4,)  # the model ends with the logits, no softmax
    assert rows[-1]["test_accuracy"] >= 0.95
    assert rows[-1]["test_f1"] >= 0.95


@pytest.mark.slow
def test_the_xor_comparison_of_the_readme(runner: CliRunner, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("xor_perceptron", "xor_mlp"):
        result = runner.invoke(
            app, ["train", str(EXPERIMENTS / f"{name}.yaml"), "--runs-dir", str(runs), "-q"]
        )
        assert result.exit_code == 0, result.output
    options = ["--metric", "train_accuracy", "--format", "json", "--out", str(tmp_path / "cmp")]
    result = runner.invoke(app, ["compare", *map(str, sorted(runs.iterdir())), *options])
    assert result.exit_code == 0, result.output
    best = {row["name"]: row["train_accuracy best"] for row in json.loads(result.stdout)["runs"]}
    assert best["xor_mlp"] == 1.0
    assert best["xor_perceptron"] <= 0.75


def test_a_multilabel_network_scores_each_label_on_its_own() -> None:
    p, rows = train("multilabel")
    assert p.task.kind == "multilabel"
    assert p.task.n_outputs == 5
    _, y = p.splits["test"]
    always_no = 1 - y.mean().item()  # the accuracy of answering "no" to every label
    assert always_no == pytest.approx(0.62, abs=0.02)
    assert rows[-1]["test_accuracy"] >= 0.78
    assert rows[-1]["test_f1"] >= 0.7


@pytest.mark.slow
def test_a_lenet_cnn_reads_the_digits() -> None:
    p, rows = train("digits_lenet")
    assert p.shapes[0] == (6, 8, 8)  # convolutions over 8x8 images, not flat vectors
    assert rows[-1]["test_accuracy"] >= 0.95


# --- the README teaches with these files ----------------------------------------------------


def lessons() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Lessons\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_lessons_use_real_experiments_and_small_pictures() -> None:
    text = lessons()
    experiments = set(re.findall(r"experiments/(\w+)\.yaml", text))
    assert experiments >= {"linear_regression", "perceptron_and", "xor_perceptron", "xor_mlp"}
    for name in experiments:
        assert (EXPERIMENTS / f"{name}.yaml").is_file(), name
    pictures = re.findall(r"\]\((docs/lessons/[\w.]+\.png)\)", text)
    assert sorted(pictures) == sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "lessons").glob("*.png")
    )
    for picture in pictures:
        assert (ROOT / picture).stat().st_size < 100_000, picture


def test_the_lessons_show_the_warning_nncli_prints(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = lessons()
    command = "nncli validate experiments/xor_mlp.yaml --set loss=bce_with_logits"
    shown = text.split(command + "\n```\n```\n", 1)[1].split("\n```", 1)[0]
    monkeypatch.chdir(ROOT)
    result = runner.invoke(app, command.split()[1:])
    assert result.exit_code == 0, result.output
    assert result.stderr == shown + "\n"
