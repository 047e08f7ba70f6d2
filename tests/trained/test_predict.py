"""`nncli predict` and `nncli eval`: the stored preprocessing and weights, applied to new rows,
give what the model gives directly; every mistake is named."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from datafiles import spec_text, tiny_images
from typer.testing import CliRunner

from nncli import data as datamod
from nncli.cli.app import app
from nncli.config.spec import load_spec
from nncli.engine.prepare import prepare
from nncli.runs.files import PREPROCESSING
from nncli.trained.load import load_run

runner = CliRunner()


def pets(n: int, seed: int) -> pd.DataFrame:
    """Animals by weight and colour; the kind is text."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["cat", "dog", "parrot"])[np.arange(n) % 3]
    weight = np.select([kinds == "cat", kinds == "dog"], [4.0, 20.0], 0.5) + rng.normal(0, 1, n)
    colour = rng.choice(["black", "white", "green"], n)
    return pd.DataFrame({"weight": weight.round(3), "colour": colour, "kind": kinds})


def train(folder: Path, data: str, loss: str, out: int, epochs: int = 20) -> Path:
    exp = folder / "exp.yaml"
    text = spec_text(data, loss, out).replace("epochs: 1", f"epochs: {epochs}")
    text = text.replace("dense: 4", "dense: 16") + "optimizer: {name: adam, lr: 0.03}\n"
    exp.write_text(text.replace("batch_size: 8", "batch_size: 16"))
    result = runner.invoke(app, ["train", str(exp), "--runs-dir", str(folder / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("classifier")
    pets(90, 0).to_csv(folder / "pets.csv", index=False)
    section = "source: csv\npath: pets.csv\ntarget: kind\nsplit: {val: 0.2, test: 0.2}"
    return train(folder, section, "cross_entropy", 3)


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("regressor")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": 3 * x[:, 0] - x[:, 1] + 5})
    frame.to_csv(folder / "r.csv", index=False)
    return train(folder, "source: csv\npath: r.csv\ntarget: y", "mse", 1, epochs=40)


def predict(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["predict", *args])
    return result.exit_code, result.stdout, result.stderr


def test_predict_equals_the_model_on_the_same_rows(classifier: Path, tmp_path: Path) -> None:
    # the run's own test rows, as raw CSV lines (what a user would bring)
    spec = load_spec(classifier / "config.yaml")
    raw = datamod.load(spec.data, spec.seed, "index")
    test_rows = datamod.split(raw, spec.data.split, spec.seed)["test"]
    source = pd.read_csv(spec.data.path)  # type: ignore[attr-defined]
    unseen = source.iloc[test_rows].drop(columns="kind")
    unseen.to_csv(tmp_path / "unseen.csv", index=False)

    code, stdout, stderr = predict(str(classifier), str(tmp_path / "unseen.csv"))
    assert code == 0, stderr
    predicted = pd.read_csv(io.StringIO(stdout))
    assert list(predicted.columns) == ["weight", "colour", "prediction", "probability"]
    pd.testing.assert_frame_equal(predicted[["weight", "colour"]], unseen.reset_index(drop=True))

    # directly: the training pipeline's own tensors through the best weights
    p = prepare(spec.model_copy(update={"train": spec.train.model_copy(update={"device": "cpu"})}))
    state = torch.load(classifier / "checkpoints" / "best.pt", weights_only=True)["model"]
    p.model.load_state_dict(state)
    p.model.eval()
    with torch.no_grad():
        probs = p.model(p.splits["test"][0]).softmax(dim=1)
    names = p.dataset.class_names or []
    assert predicted["prediction"].tolist() == [names[i] for i in probs.argmax(1).tolist()]
    np.testing.assert_allclose(predicted["probability"], probs.max(1).values.numpy(), rtol=1e-6)
    # string labels round-trip: the text classes come back, and they are right
    truth = source.iloc[test_rows]["kind"].tolist()
    assert set(predicted["prediction"]) <= {"cat", "dog", "parrot"}
    assert np.mean(predicted["prediction"].to_numpy() == np.array(truth)) >= 0.9


def test_predict_writes_out_and_refuses_its_input(classifier: Path, tmp_path: Path) -> None:
    pets(5, 9).to_csv(tmp_path / "new.csv", index=False)  # the target column may be there
    out = tmp_path / "pred.csv"
    code, stdout, stderr = predict(
        str(classifier), str(tmp_path / "new.csv"), "--out", str(out), "--checkpoint", "last"
    )
    assert code == 0, stderr
    assert stdout == ""
    assert stderr.strip() == f"wrote 5 predictions to {out}"
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["weight", "colour", "kind", "prediction", "probability"]
    assert all(0.33 < float(r["probability"]) <= 1 for r in rows)
    code, _, stderr = predict(
        str(classifier), str(tmp_path / "new.csv"), "-o", str(tmp_path / "new.csv")
    )
    assert code == 2
    assert (
        stderr.strip()
        == f"error --out {tmp_path / 'new.csv'} is the input file; write to another file"
    )


def test_predict_errors_name_the_column_value_or_file(classifier: Path, tmp_path: Path) -> None:
    pets(4, 1).drop(columns="colour").to_csv(tmp_path / "no_colour.csv", index=False)
    code, stdout, stderr = predict(str(classifier), str(tmp_path / "no_colour.csv"))
    assert code == 2
    assert stdout == ""
    assert stderr.strip() == (
        f"error {tmp_path / 'no_colour.csv'} lacks column(s) 'colour' that the run was trained on"
    )
    (tmp_path / "purple.csv").write_text("weight,colour\n3,black\n4,purple\n")
    code, _, stderr = predict(str(classifier), str(tmp_path / "purple.csv"))
    assert code == 2
    assert stderr.strip() == (
        f"error column 'colour' of {tmp_path / 'purple.csv'} has value(s) 'purple' on line 3 "
        "that training never saw (known: black, green, white)"
    )
    (tmp_path / "text.csv").write_text("weight,colour\nheavy,black\n")
    code, _, stderr = predict(str(classifier), str(tmp_path / "text.csv"))
    assert stderr.strip() == (
        f"error column 'weight' of {tmp_path / 'text.csv'} holds text ('heavy') on line 2; "
        "it is numeric in training"
    )
    (tmp_path / "gap.csv").write_text("weight,colour\n,black\n")
    code, _, stderr = predict(str(classifier), str(tmp_path / "gap.csv"))
    assert stderr.strip() == (
        f"error column 'weight' of {tmp_path / 'gap.csv'} has missing values on line 2; "
        "fill them in, or set data.fill: mean (or median, zero)"
    )
    code, _, stderr = predict(str(classifier), str(tmp_path / "nope.csv"))
    assert code == 2
    assert stderr.strip() == f"error input: {tmp_path / 'nope.csv'} does not exist"
    (tmp_path / "clash.csv").write_text("weight,colour,prediction\n3,black,x\n")
    code, _, stderr = predict(str(classifier), str(tmp_path / "clash.csv"))
    assert stderr.strip() == (
        f"error {tmp_path / 'clash.csv'} already has a column 'prediction', which predict adds; "
        "rename it"
    )
    code, _, stderr = predict(str(tmp_path), str(tmp_path / "gap.csv"))
    assert code == 2
    assert "is not a run folder: it has no run.json" in stderr


def test_predict_reports_every_problem_of_its_input_at_once(
    classifier: Path, tmp_path: Path
) -> None:
    """A missing value no longer hides an unknown category, nor a missing column the rest;
    each problem names its column and at most five lines."""
    rows = ["weight,colour", *([",black"] * 7), "3,purple", "heavy,pink"]
    path = tmp_path / "two.csv"
    path.write_text("\n".join(rows) + "\n")
    before = path.read_bytes()
    code, stdout, stderr = predict(str(classifier), str(path), "--out", str(tmp_path / "o.csv"))
    assert code == 2
    assert stdout == ""
    assert stderr.strip() == (
        f"error {path} has 3 problems, each to fix:\n"
        f"  column 'weight' of {path} has missing values on lines 2, 3, 4, 5, 6 and 2 more; "
        "fill them in, or set data.fill: mean (or median, zero)\n"
        f"  column 'weight' of {path} holds text ('heavy') on line 10; it is numeric in "
        "training\n"
        f"  column 'colour' of {path} has value(s) 'purple', 'pink' on lines 9, 10 that "
        "training never saw (known: black, green, white)"
    )
    assert path.read_bytes() == before
    assert not (tmp_path / "o.csv").exists()
    (tmp_path / "no_weight.csv").write_text("colour\nblack\npurple\n")
    code, _, stderr = predict(str(classifier), str(tmp_path / "no_weight.csv"))
    assert code == 2
    where = tmp_path / "no_weight.csv"
    assert stderr.strip() == (
        f"error {where} has 2 problems, each to fix:\n"
        f"  {where} lacks column(s) 'weight' that the run was trained on\n"
        f"  column 'colour' of {where} has value(s) 'purple' on line 3 that training never "
        "saw (known: black, green, white)"
    )


def test_predict_needs_the_stored_preprocessing(classifier: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(classifier, copy)
    (copy / PREPROCESSING).unlink()
    pets(3, 2).to_csv(tmp_path / "new.csv", index=False)
    code, _, stderr = predict(str(copy), str(tmp_path / "new.csv"))
    assert code == 2
    assert stderr.strip() == (
        f"error {copy / PREPROCESSING} is missing: the run was trained by an older nncli or its "
        "folder is incomplete; train it again to predict with it"
    )
    stored = json.loads((classifier / PREPROCESSING).read_text())
    (copy / PREPROCESSING).write_text(json.dumps({**stored, "format": 99}))
    code, _, stderr = predict(str(copy), str(tmp_path / "new.csv"))
    assert stderr.strip() == (
        f"error {copy / PREPROCESSING} was written by a newer nncli; upgrade nncli to use it"
    )
    (copy / PREPROCESSING).write_text("{")
    code, _, stderr = predict(str(copy), str(tmp_path / "new.csv"))
    assert code == 2
    assert stderr.startswith(f"error {copy / PREPROCESSING} cannot be read:")


def test_the_stored_statistics_are_used_not_refitted(classifier: Path) -> None:
    stored = json.loads((classifier / PREPROCESSING).read_text())
    t = load_run(classifier)
    assert t.pre.mean == stored["mean"]
    assert t.pre.class_names == ["cat", "dog", "parrot"]
    one = pd.DataFrame({"weight": [4.0], "colour": ["black"]})
    from nncli.data.preprocess import encode

    x = t.pre.transform(encode(one, t.pre.features, None, "one"))
    expected = (4.0 - stored["mean"][0]) / stored["std"][0]
    assert x[0, 0] == pytest.approx(expected, rel=1e-6)


def eval_(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["eval", *args])
    return result.exit_code, result.stdout, result.stderr


def test_eval_on_a_split_matches_the_run(classifier: Path) -> None:
    code, stdout, stderr = eval_(str(classifier), "--checkpoint", "last", "-f", "json")
    assert code == 0, stderr
    metrics = {r["metric"]: r["value"] for r in json.loads(stdout)}
    final = json.loads((classifier / "run.json").read_text())["final"]
    assert metrics["accuracy"] == pytest.approx(final["test_accuracy"])
    assert metrics["loss"] == pytest.approx(final["test_loss"], rel=1e-5)
    code, stdout, _ = eval_(str(classifier), "--split", "val", "--checkpoint", "last", "-f", "csv")
    assert code == 0
    rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(io.StringIO(stdout))}
    assert rows["accuracy"] == pytest.approx(final["val_accuracy"])
    code, stdout, _ = eval_(str(classifier))
    assert stdout.splitlines()[0] == f"{classifier}: the test split, 18 rows, last.pt"


def test_eval_on_a_labelled_file(classifier: Path, tmp_path: Path) -> None:
    pets(30, 5).to_csv(tmp_path / "labelled.csv", index=False)
    code, stdout, stderr = eval_(
        str(classifier), "--data", str(tmp_path / "labelled.csv"), "-f", "json"
    )
    assert code == 0, stderr
    metrics = {r["metric"]: r["value"] for r in json.loads(stdout)}
    assert metrics["accuracy"] >= 0.9
    frame = pets(3, 5)
    frame.loc[1, "kind"] = "emu"
    frame.to_csv(tmp_path / "emu.csv", index=False)
    code, _, stderr = eval_(str(classifier), "--data", str(tmp_path / "emu.csv"))
    assert code == 2
    assert stderr.strip() == (
        f"error target column 'kind' of {tmp_path / 'emu.csv'} has label(s) 'emu' on line 3 "
        "that the run does not know (its classes: cat, dog, parrot)"
    )
    pets(3, 5).drop(columns="kind").to_csv(tmp_path / "unlabelled.csv", index=False)
    code, _, stderr = eval_(str(classifier), "--data", str(tmp_path / "unlabelled.csv"))
    assert stderr.strip() == (
        f"error {tmp_path / 'unlabelled.csv'} lacks target column(s) 'kind' to evaluate against"
    )
    code, _, stderr = eval_(str(classifier), "--split", "tset")
    assert code == 2
    assert stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for '--split': Value error, 'tset' is not one of 'train', 'val', "
        "'test'."
    )
    code, _, stderr = eval_(
        str(classifier), "--split", "val", "--data", str(tmp_path / "labelled.csv")
    )
    assert stderr.strip() == "error give --split or --data, not both"


def test_regression_predicts_values(regressor: Path, tmp_path: Path) -> None:
    (tmp_path / "new.csv").write_text("a,b\n0,0\n1,-1\n")
    code, stdout, stderr = predict(str(regressor), str(tmp_path / "new.csv"))
    assert code == 0, stderr
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert list(rows[0]) == ["a", "b", "prediction"]
    assert float(rows[0]["prediction"]) == pytest.approx(5, abs=1)
    assert float(rows[1]["prediction"]) == pytest.approx(9, abs=1.5)
    code, stdout, _ = eval_(str(regressor), "-f", "json")
    metrics = {r["metric"]: r["value"] for r in json.loads(stdout)}
    assert set(metrics) == {"loss", "mae", "rmse", "r2"}
    assert metrics["r2"] > 0.8


def test_multilabel_predicts_each_label(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "pos_a": (x[:, 0] > 0) * 1})
    frame["pos_b"] = (x[:, 1] > 0) * 1
    frame.to_csv(tmp_path / "m.csv", index=False)
    run = train(tmp_path, "source: csv\npath: m.csv\ntarget: [pos_a, pos_b]", "bce_with_logits", 2)
    code, stdout, stderr = predict(str(run), str(tmp_path / "m.csv"))
    assert code == 0, stderr
    out = pd.read_csv(io.StringIO(stdout))
    assert list(out.columns)[4:] == [
        "prediction_pos_a",
        "probability_pos_a",
        "prediction_pos_b",
        "probability_pos_b",
    ]
    assert (out["prediction_pos_a"] == out["pos_a"]).mean() > 0.8
    code, stdout, _ = eval_(str(run), "--data", str(tmp_path / "m.csv"), "-f", "json")
    assert code == 0
    assert {r["metric"] for r in json.loads(stdout)} == {"loss", "accuracy"}


def test_images_in_npz_arrays_are_predicted_and_evaluated(tmp_path: Path) -> None:
    images, labels = tiny_images(n=80, side=12, seed=0)
    np.savez(tmp_path / "train.npz", pixels=images, digit=labels)
    (tmp_path / "cnn.yaml").write_text(
        "seed: 0\n"
        "data: {source: npz, path: train.npz, x_key: pixels, y_key: digit, scale: 1/255,\n"
        "       shape: [1, 12, 12], split: {test: 0.25}}\n"
        "model: {layers: [{type: conv2d, out_channels: 4, kernel_size: 3}, relu, flatten, dense: 2]}\n"
        "loss: cross_entropy\n"
        "optimizer: {name: adam, lr: 0.03}\n"
        "train: {epochs: 20, batch_size: 16, device: cpu}\n"
    )
    trained = runner.invoke(app, ["train", str(tmp_path / "cnn.yaml"), "--runs-dir", str(tmp_path)])
    assert trained.exit_code == 0, trained.output
    run = Path(trained.stdout.strip().splitlines()[-1])
    new, truth = tiny_images(n=12, side=12, seed=9)
    np.savez(tmp_path / "new.npz", pixels=new, digit=truth)

    code, stdout, stderr = predict(str(run), str(tmp_path / "new.npz"))
    assert code == 0, stderr
    out = pd.read_csv(io.StringIO(stdout))
    assert list(out.columns) == ["row", "prediction", "probability"]
    assert out["row"].tolist() == list(range(12))
    # the same as the model on the images scaled as in training
    t = load_run(run)
    with torch.no_grad():
        probs = t.model(torch.as_tensor(new / 255.0, dtype=torch.float32)[:, None]).softmax(1)
    assert out["prediction"].tolist() == probs.argmax(1).tolist()
    np.testing.assert_allclose(out["probability"], probs.max(1).values.numpy(), rtol=1e-5)
    assert (out["prediction"] == truth).mean() >= 0.9

    code, stdout, stderr = eval_(str(run), "--data", str(tmp_path / "new.npz"), "-f", "json")
    assert code == 0, stderr
    metrics = {r["metric"]: r["value"] for r in json.loads(stdout)}
    assert metrics["accuracy"] == pytest.approx((out["prediction"] == truth).mean())

    np.savez(tmp_path / "wide.npz", pixels=np.zeros((3, 13, 13)))
    code, _, stderr = predict(str(run), str(tmp_path / "wide.npz"))
    assert code == 2
    assert stderr.strip() == (
        f"error {tmp_path / 'wide.npz'}: 'pixels' is float64 shaped (3, 13, 13); {run} takes "
        "samples of 144 numbers (shaped (1, 12, 12)), one per row"
    )
    np.savez(tmp_path / "unnamed.npz", x=new)
    code, _, stderr = predict(str(run), str(tmp_path / "unnamed.npz"))
    assert code == 2
    assert stderr.strip() == (
        f"error {tmp_path / 'unnamed.npz'} has no array 'pixels' (data.x_key); its arrays: x"
    )


def refused(run: Path, file: Path, **arrays: np.ndarray) -> str:
    """What predict and eval --data say of these arrays saved as `file` (both refuse)."""
    np.savez(file, **arrays)
    code, _, stderr = predict(str(run), str(file))
    assert code == 2, stderr
    code_eval, _, stderr_eval = eval_(str(run), "--data", str(file))
    assert code_eval == 2, stderr_eval
    return stderr.strip()


def test_npz_rows_need_a_run_without_text_columns(classifier: Path, tmp_path: Path) -> None:
    assert refused(classifier, tmp_path / "pets.npz", x=np.zeros((2, 2))) == (
        f"error {tmp_path / 'pets.npz'}: {classifier} one-hot encodes the text column(s) "
        "'colour'; give its rows as a CSV with the columns weight, colour"
    )


def test_npz_rows_that_cannot_be_read_are_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    np.savez(tmp_path / "train.npz", x=x, y=(x[:, 0] > 0).astype(int))
    run = train(tmp_path, "source: npz\npath: train.npz", "cross_entropy", 2)
    assert refused(run, tmp_path / "empty.npz", x=np.zeros((0, 3)), y=np.zeros(0, int)) == (
        f"error {tmp_path / 'empty.npz'}: 'x' has no rows"
    )
    nan = x[:4].copy()
    nan[2, 1] = np.nan
    assert refused(run, tmp_path / "nan.npz", x=nan, y=np.zeros(4, int)) == (
        f"error {tmp_path / 'nan.npz'}: 'x' holds NaN or infinite values on row 2; the run "
        "has no data.fill to fill NaN; give finite numbers"
    )
    assert refused(run, tmp_path / "one.npz", x=x[0], y=np.zeros(1, int)) == (
        f"error {tmp_path / 'one.npz'}: 'x' is float64 shaped (3,); {run} takes samples of 3 "
        "numbers (shaped (3,)), one per row; for one sample, save x[None] (shaped (1, 3))"
    )
    np.savez(tmp_path / "scalar.npz", x=x[:2], y=np.array(1))
    code, _, stderr = eval_(str(run), "--data", str(tmp_path / "scalar.npz"))
    assert code == 2
    assert stderr.strip() == (
        f"error {tmp_path / 'scalar.npz'}: 'y' is shaped (); the run needs 2 rows of 1 "
        "target(s), one row per row of 'x'"
    )
    np.savez(tmp_path / "labels.npz", x=x[:5], y=np.array([0, 1, 7, 1, 9]))
    code, _, stderr = eval_(str(run), "--data", str(tmp_path / "labels.npz"))
    assert code == 2
    assert stderr.strip() == (
        f"error 'y' of {tmp_path / 'labels.npz'} has label(s) '7', '9' on rows 2, 4 that the "
        "run does not know (its classes: 0, 1)"
    )
    # the suffix in capitals is still an .npz file
    np.savez(tmp_path / "upper.npz", x=x[:3])
    (tmp_path / "upper.npz").rename(tmp_path / "UPPER.NPZ")
    code, stdout, stderr = predict(str(run), str(tmp_path / "UPPER.NPZ"))
    assert code == 0, stderr
    assert pd.read_csv(io.StringIO(stdout))["row"].tolist() == [0, 1, 2]


def test_npz_rows_of_a_csv_run_follow_its_columns(regressor: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "ab.npz", x=np.array([[0.0, 0.0], [1.0, -1.0]]))
    code, stdout, stderr = predict(str(regressor), str(tmp_path / "ab.npz"))
    assert code == 0, stderr
    (tmp_path / "ab.csv").write_text("a,b\n0,0\n1,-1\n")
    _, from_csv, _ = predict(str(regressor), str(tmp_path / "ab.csv"))
    assert pd.read_csv(io.StringIO(stdout))["prediction"].tolist() == pytest.approx(
        pd.read_csv(io.StringIO(from_csv))["prediction"].tolist()
    )
    assert refused(regressor, tmp_path / "abc.npz", x=np.zeros((2, 3))) == (
        f"error {tmp_path / 'abc.npz'}: 'x' is float64 shaped (2, 3); {regressor} takes "
        "samples of 2 numbers (shaped (2,)) in the order of its columns a, b, one per row"
    )
