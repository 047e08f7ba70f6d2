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


def least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The weights, then the bias, of the line or plane nearest to (x, y)."""
    solution: np.ndarray = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)[0]
    return solution


def test_linear_regression_learns_the_least_squares_line(runner: CliRunner, tmp_path: Path) -> None:
    """The lesson's data is the numpy example's (y = 2x + 1 + noise, seed 42); its answer,
    least squares, is y = 2.0409 x + 0.9804: what show prints and the README shows, in x's
    own units although the neuron trained on standardised x."""
    data = np.loadtxt(EXPERIMENTS / "data" / "line.csv", delimiter=",", skiprows=1)
    np.random.seed(42)  # the numpy example, as the file's header writes it
    noise = np.random.randn(100, 1)
    x = 2 * np.random.rand(100, 1) - 1
    assert np.allclose(data, np.c_[x, 2 * x + 1 + 0.2 * noise], atol=1e-6)
    w, b = least_squares(data[:, :1], data[:, 1])
    assert (round(w, 4), round(b, 4)) == (2.0409, 0.9804)

    result = runner.invoke(
        app,
        ["train", str(EXPERIMENTS / "linear_regression.yaml"), "--runs-dir", str(tmp_path), "-q"],
    )
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip())
    assert json.loads((run / "run.json").read_text())["samples"] == {"train": 100}
    shown = runner.invoke(app, ["show", str(run), "--weights"])
    assert shown.exit_code == 0, shown.output
    line = f"y = {w:.4g} x + {b:.4g}"
    assert line == "y = 2.041 x + 0.9804"
    assert line in shown.stdout.splitlines()
    assert f"nncli show $run --weights      # ... {line}\n" in lessons()


def equation_terms(line: str) -> tuple[str, dict[str, float]]:
    """`price = 3 rooms + 0.01 area - 5` -> ("price", {"rooms": 3, "area": 0.01, "": -5})."""
    left, right = line.split(" = ", 1)
    terms: dict[str, float] = {}
    for term in right.replace(" - ", " + -").split(" + "):
        value, _, name = term.partition(" ")
        terms[name] = float(value)
    return left, terms


HOUSES = """\
data:
  source: csv
  path: houses.csv
  target: price
  exclude: [expensive]
  split: {test: 0.25}
model: {layers: [dense: 1]}
loss: mse
train: {epochs: 5, batch_size: 16, device: cpu}
"""


@pytest.mark.parametrize(
    ("overrides", "lines"),
    [
        ([], ["price = {eq}"]),
        (
            ["data.target=expensive", "data.exclude=[price]", "loss=bce_with_logits"],
            ["z = {eq}", "y = sigmoid(z)  (sigmoid applied by the loss, bce_with_logits)"],
        ),
        (
            ["data.target=expensive", "data.exclude=[price]", "loss=bce"],
            ["z = {eq}", "y = sigmoid(z)"],
        ),
    ],
)
def test_a_neuron_reads_in_the_data_units_by_column_name(
    runner: CliRunner, tmp_path: Path, overrides: list[str], lines: list[str]
) -> None:
    """Inputs standardised for training, yet the equation takes the raw columns, by name,
    and gives what the model gives; an activation (or the loss's) is its own line."""
    rng = np.random.default_rng(0)
    rooms = rng.integers(1, 7, 80).astype(float)
    area = rng.uniform(30, 250, 80).round(1)
    price = 30 * rooms + 2 * area + 50 + rng.normal(0, 5, 80)
    expensive = (price > np.median(price)).astype(int)
    table = "rooms,area,price,expensive\n" + "".join(
        f"{r},{a},{p:.2f},{e}\n" for r, a, p, e in zip(rooms, area, price, expensive, strict=True)
    )
    (tmp_path / "houses.csv").write_text(table, encoding="utf-8")
    text = HOUSES
    if "loss=bce" in overrides:
        text = text.replace("[dense: 1]", "[dense: 1, sigmoid]")
    (tmp_path / "houses.yaml").write_text(text, encoding="utf-8")
    sets = [a for o in overrides for a in ("--set", o)]
    args = ["train", str(tmp_path / "houses.yaml"), "--runs-dir", str(tmp_path), "-q", *sets]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip())
    shown = runner.invoke(app, ["show", str(run), "--weights"]).stdout.splitlines()
    at = shown.index("weights (last.pt):") + 1
    first, *rest = lines
    _, terms = equation_terms(shown[at])
    assert shown[at] == first.format(eq=shown[at].split(" = ", 1)[1])
    assert shown[at + 1 : at + len(lines)] == rest
    assert shown[at + len(lines)].startswith("(in the data's own units:")
    assert sorted(terms) == ["", "area", "rooms"]

    from nncli.trained.load import load_run

    t = load_run(run)
    x = np.c_[rooms, area].astype(np.float32)
    with torch.no_grad():
        model_z = t.model[0](torch.as_tensor(t.pre.transform(x))).numpy().ravel()
    printed_z = terms["rooms"] * rooms + terms["area"] * area + terms[""]
    assert np.allclose(printed_z, model_z, rtol=1e-3, atol=1e-2)


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


@pytest.mark.slow
def test_a_small_resnet_reads_the_digits_and_its_plain_twin_differs_only_by_its_skips() -> None:
    p, rows = train("digits_resnet")
    assert rows[-1]["test_accuracy"] >= 0.97
    plain = prepare(load_spec(EXPERIMENTS / "digits_resnet_plain.yaml"), "cpu")
    # the same layers: the plain net lacks only the 1x1 projection (16 -> 32 channels)
    assert p.n_params - plain.n_params == 16 * 32
    assert p.shapes == [*plain.shapes[:3], (16, 8, 8), (32, 4, 4), *plain.shapes[-3:]]
    table = lessons()
    measured = f"{rows[-1]['test_accuracy']:.4f} | {rows[-1]['test_loss']:.4f} |"
    assert f"| digits_resnet | yes | {p.n_params:,} | {measured}" in table
    assert "| digits_resnet_plain | no | 23,946 | 0.9861 |" in table


@pytest.mark.slow
def test_an_lstm_forecasts_sines_as_well_as_the_linear_baseline() -> None:
    table = lessons()
    for name in ("sine_lstm", "sine_linear"):
        p, rows = train(name)
        last = rows[-1]
        assert last["test_r2"] >= 0.95, name
        measured = f"| {name} | {p.n_params:,} | {last['test_r2']:.4f} | {last['test_mae']:.4f} |"
        assert measured in table, measured


@pytest.mark.slow
def test_attention_reads_word_order_that_a_bag_of_words_cannot() -> None:
    table = lessons()
    accuracy = {}
    for name in ("text_attention", "text_bow"):
        p, rows = train(name)
        last = rows[-1]
        accuracy[name] = last["test_accuracy"]
        measured = (
            f"| {name} | {p.n_params:,} | {last['test_accuracy']:.4f} | {last['test_loss']:.4f} |"
        )
        assert measured in table, measured
    assert accuracy["text_attention"] >= 0.9
    assert accuracy["text_bow"] < 0.85  # a `not` it sees, never where


@pytest.mark.slow
def test_augmented_digits_and_their_twin_give_the_readme_rows() -> None:
    table = lessons()
    train_accuracy = []
    for shown, augment, overrides in (
        ("digits_augment", "random_crop: 1, rotation: 8", []),
        ("digits_augment, data.augment=[]", "none", ["data.augment=[]"]),
    ):
        p = prepare(load_spec(EXPERIMENTS / "digits_augment.yaml", overrides), "cpu")
        sink = Rows()
        fit(p, sink)
        last = sink.rows[-1]
        train_accuracy.append(last["train_accuracy"])
        measured = (
            f"| {shown} | {augment} | {p.n_params:,} | {last['train_accuracy']:.4f} | "
            f"{last['test_accuracy']:.4f} | {last['test_loss']:.4f} |"
        )
        assert measured in table, measured
    # augmentation makes the train split harder than the test split here: the lesson's point
    assert train_accuracy[0] < train_accuracy[1]


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


def test_the_first_run_is_the_tutorials_problem_and_the_readme_shows_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    """circles.yaml makes scikit-learn's make_circles(1000, noise=0.03) (factor 0.8): the
    tutorial's harder problem, not concentric circles at half the radius; it still reaches
    test accuracy 1.0, and the README's first run shows what nncli prints."""
    from sklearn.datasets import make_circles

    from nncli import data as datamod

    spec = load_spec(EXPERIMENTS / "circles.yaml", ["data.noise=0"])
    ds = datamod.load(spec.data, spec.seed)
    x, y = make_circles(n_samples=1000, noise=None, shuffle=False)
    assert np.allclose(ds.x, x, atol=1e-6)
    assert ds.y.tolist() == y.tolist()

    args = ["train", str(EXPERIMENTS / "circles.yaml"), "--runs-dir", str(tmp_path)]
    result = runner.invoke(app, [*args, "--set", "train.device=cpu"])
    assert result.exit_code == 0, result.output
    printed = result.stdout.splitlines()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = readme.split("nncli train experiments/circles.yaml\n```\n\n```\n", 1)[1]
    shown_lines = shown.split("\n```", 1)[0].splitlines()

    def timeless(line: str) -> str:  # times and folder names differ from run to run
        return re.sub(r"\(\d+\.\d+s\)|done in \d+\.\d+s|runs/\S+", "", line)

    assert [timeless(ln) for ln in shown_lines[:2]] == [timeless(ln) for ln in printed[:2]]
    for line in shown_lines[3:-1]:
        if line != "...":
            assert timeless(line) in [timeless(ln) for ln in printed], line
    last = printed[-2]
    assert "test_accuracy 1.0000" in last
