"""Sequence data: `source: timeseries` (windows, chronological split, train-part
standardisation, forecasts in the target's units), `source: text` (token ids, vocabulary
from the train split), and the generated sines, marker_order and text_sentiment."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import refused
from typer.testing import CliRunner

from nncli import data as datamod
from nncli.cli.app import app
from nncli.config import yamlio
from nncli.config.spec import validate

SERIES = """\
name: ts
seed: 1
data:
  source: timeseries
  path: series.csv
  target: y
  date: day
  window: 4
  horizon: 2
  split: {{val: 0.2, test: 0.2}}{extra}
model:
  layers:
    - flatten
    - dense: 1
loss: mse
optimizer: {{name: adam, lr: 0.05}}
train: {{epochs: 30, batch_size: 16, device: cpu}}
metrics: [r2]
"""


def sine(n: int) -> np.ndarray:
    return 100 + 10 * np.sin(np.arange(n) / 5)


def series_csv(folder: Path, n: int = 120, name: str = "series.csv", start: str = "2024-01-01"):
    days = pd.date_range(start, periods=n).strftime("%Y-%m-%d")
    path = folder / name
    pd.DataFrame({"day": days, "y": sine(n)}).to_csv(path, index=False)
    return path


def spec(folder: Path, extra: str = "", text: str = SERIES) -> Path:
    path = folder / "ts.yaml"
    path.write_text(text.format(extra=extra), encoding="utf-8")
    return path


def data_of(path: Path):  # the validated data section, its paths from the file's folder
    return validate(yamlio.loads(path.read_text(), str(path))).data.with_folder(path.parent)


def train(runner: CliRunner, path: Path, tmp_path: Path) -> Path:
    result = runner.invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


# --- timeseries --------------------------------------------------------------------------


def test_windows_and_horizon_match_a_hand_made_expectation(tmp_path: Path) -> None:
    a, b = np.arange(10.0), np.arange(10.0) ** 2
    pd.DataFrame({"a": a, "b": b}).to_csv(tmp_path / "ab.csv", index=False)
    text = SERIES.replace(
        "path: series.csv\n  target: y\n  date: day\n  window: 4",
        "path: ab.csv\n  target: b\n  features: [a, b]\n  window: 3",
    )
    ds = datamod.load(data_of(spec(tmp_path, text=text)), 0)
    n = 10 - 3 - 2 + 1
    expected_x = np.stack([np.c_[a, b][i : i + 3] for i in range(n)]).reshape(n, 6)
    assert ds.x.dtype == np.float32 and ds.x.shape == (n, 6)
    np.testing.assert_array_equal(ds.x, expected_x)
    np.testing.assert_array_equal(ds.y, b[3 - 1 + 2 : 3 - 1 + 2 + n, None])
    assert ds.preprocessing is not None and ds.preprocessing.shape == [3, 2]
    assert ds.preprocessing.columns == ["a[t-2]", "b[t-2]", "a[t-1]", "b[t-1]", "a[t]", "b[t]"]


def test_the_split_is_chronological(tmp_path: Path) -> None:
    series_csv(tmp_path)
    _, idx = datamod.prepare(data_of(spec(tmp_path)), 3, "value")
    n = 120 - 4 - 2 + 1
    assert sorted(idx["train"].tolist()) == list(range(n - 23 - 23))
    assert idx["val"].tolist() == list(range(n - 46, n - 23))
    assert idx["test"].tolist() == list(range(n - 23, n))
    assert idx["train"].max() < idx["val"].min() and idx["val"].max() < idx["test"].min()


def test_standardisation_learns_from_the_train_part_only(tmp_path: Path) -> None:
    y = sine(120)
    series_csv(tmp_path)
    ds, idx = datamod.prepare(data_of(spec(tmp_path)), 0, "value")
    n_train = len(idx["train"])  # windows 0 .. n_train - 1 read rows 0 .. n_train + 2
    pre = ds.preprocessing
    assert pre is not None and pre.mean is not None and pre.std is not None
    assert pre.mean == pytest.approx([y[: n_train + 3].mean()] * 4, rel=1e-6)
    assert pre.std == pytest.approx([y[: n_train + 3].std()] * 4, rel=1e-6)
    targets = y[5 : 5 + n_train]  # window 4, horizon 2: window i's target is row i + 5
    assert pre.target_mean == pytest.approx([targets.mean()], rel=1e-6)
    assert pre.target_std == pytest.approx([targets.std()], rel=1e-6)
    # the rows after the train part change nothing
    frame = pd.read_csv(tmp_path / "series.csv")
    frame.loc[n_train + 5 :, "y"] = 1e6
    frame.to_csv(tmp_path / "series.csv", index=False)
    again, _ = datamod.prepare(data_of(spec(tmp_path)), 0, "value")
    assert again.preprocessing is not None
    assert again.preprocessing.mean == pre.mean and again.preprocessing.std == pre.std
    assert again.preprocessing.target_mean == pre.target_mean


def test_predict_gives_one_forecast_per_window_in_the_targets_units(
    runner: CliRunner, tmp_path: Path
) -> None:
    series_csv(tmp_path)
    run = train(runner, spec(tmp_path), tmp_path)
    new = series_csv(tmp_path, n=8, name="new.csv", start="2025-01-01")
    result = runner.invoke(app, ["predict", str(run), str(new)])
    assert result.exit_code == 0, result.output
    rows = list(pd.read_csv(io.StringIO(result.stdout)).itertuples(index=False))
    # one row per window: from the 4th row on, each with the forecast of the row 2 later
    assert [r.day for r in rows] == [f"2025-01-0{d}" for d in range(4, 9)]
    truth = sine(10)[5:10]
    assert [r.prediction for r in rows] == pytest.approx(truth.tolist(), abs=0.5)
    # the model's own outputs, un-standardised with the stored target statistics
    from nncli.trained.load import load_run
    from nncli.trained.predict import outputs

    t = load_run(run, "last")
    x = np.stack([sine(8)[i : i + 4] for i in range(5)]).astype(np.float32)
    mean, std = t.pre.mean, t.pre.std
    assert mean is not None and std is not None and t.pre.target_std is not None
    model_out = outputs(t.model, ((x - mean[0]) / std[0])[:, :, None]).numpy()[:, 0]
    assert t.pre.target_mean is not None
    by_hand = model_out * t.pre.target_std[0] + t.pre.target_mean[0]
    assert [r.prediction for r in rows] == pytest.approx(by_hand.tolist(), rel=1e-5)
    # eval on the run's test split and on a labelled history file, in the targets' units
    from nncli.trained.evaluate import evaluate_run

    own = evaluate_run(run)
    assert (own.rows, own.n) == ("the test split", 23) and own.metrics["r2"] > 0.99
    labelled = series_csv(tmp_path, n=30, name="labelled.csv", start="2025-02-01")
    other = evaluate_run(run, labelled)
    assert other.n == 30 - 4 - 2 + 1 and other.metrics["r2"] > 0.99
    result = runner.invoke(app, ["eval", str(run), "--data", str(labelled)])
    assert result.exit_code == 0, result.output
    # an .npz history: one 1-D array per column
    np.savez(tmp_path / "new.npz", y=sine(8), day=np.array([f"2025-01-0{d}" for d in range(1, 9)]))
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "new.npz")])
    assert result.exit_code == 0, result.output
    npz_rows = list(pd.read_csv(io.StringIO(result.stdout)).itertuples(index=False))
    assert [r.prediction for r in npz_rows] == pytest.approx(by_hand.tolist(), rel=1e-5)


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        (
            "window: 4",
            "window: 200",
            "ts.yaml:8:3  data.window",
            "data.window 200 and data.horizon 2 need at least 202 rows; ",
        ),
        ("target: y", "target: yy", "ts.yaml:6:3  data.target", "column 'yy' is not in "),
        (
            "target: y",
            "target: y\n  features: [y, z]",
            "ts.yaml:7:3  data.features",
            "column 'z' is not in ",
        ),
        ("date: day", "date: when", "ts.yaml:7:3  data.date", "column 'when' is not in "),
        (
            "val: 0.2",
            "val: 0.001",
            "ts.yaml:10:11  data.split.val",
            "the val split of 115 windows is empty; use a longer series or a larger fraction",
        ),
        (
            "val: 0.2,",
            "stratify: true,",
            "ts.yaml:10:11  data.split.stratify",
            "so stratify must be false (stratifying would mix later rows into training)",
        ),
    ],
)
def test_bad_keys_are_located_errors(
    runner: CliRunner, tmp_path: Path, old: str, new: str, where: str, message: str
) -> None:
    series_csv(tmp_path)
    path = spec(tmp_path, text=SERIES.replace(old, new, 1))
    err = refused(runner, path, tmp_path)
    assert where in err and message in err, err


def test_rows_out_of_time_order_are_refused_with_their_lines(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = series_csv(tmp_path)
    lines = path.read_text().splitlines()
    lines[5], lines[6] = lines[6], lines[5]
    path.write_text("\n".join(lines) + "\n")
    err = refused(runner, spec(tmp_path), tmp_path)
    assert "rows of " in err and "are not in time order: 'day' does not increase on line 7" in err


def test_validate_finds_a_missing_column_without_loading(runner: CliRunner, tmp_path: Path) -> None:
    series_csv(tmp_path)
    path = spec(tmp_path)
    path.write_text(path.read_text().replace("target: y", "target: yy"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "data.target  column 'yy' is not in" in result.output
    assert "data.features" not in result.output  # the default features are the target


# --- text --------------------------------------------------------------------------------

TEXT = """\
name: words
seed: 0
data:
  source: text
  path: reviews.csv
  target: label
  max_length: 4{extra}
  split: {{test: 0.25}}
model:
  layers:
    - dense: 2
loss: cross_entropy
optimizer: {{name: adam, lr: 0.05}}
train: {{epochs: 3, batch_size: 8, device: cpu}}
metrics: [accuracy]
"""


def reviews(folder: Path, n: int = 20) -> Path:
    path = folder / "reviews.csv"
    rows = [f"w{i} common,{('neg', 'pos')[i % 2]}" for i in range(n)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


def test_the_vocabulary_comes_from_the_train_split_only(tmp_path: Path) -> None:
    reviews(tmp_path)
    ds, idx = datamod.prepare(data_of(spec(tmp_path, text=TEXT)), 0, "index")
    pre = ds.preprocessing
    assert pre is not None and pre.text is not None
    train = sorted(idx["train"].tolist())
    assert len(train) == 16  # stratified: 2 of each class test
    assert pre.text.vocabulary == ["common", *sorted(f"w{i}" for i in train)]
    assert pre.vocab_size == ds.vocab_size == 2 + 1 + 16
    # a test row's own word was never seen in training: unknown (1); then padding (0)
    for row in idx["test"].tolist():
        assert ds.x[row].tolist() == [1.0, 2.0, 0.0, 0.0]
    first = train[0]
    assert ds.x[first].tolist() == [2.0 + 1 + train.index(first), 2.0, 0.0, 0.0]
    assert ds.x.dtype == np.float32 and pre.shape == [4] and not pre.standardize


def test_min_count_and_the_char_tokenizer(tmp_path: Path) -> None:
    reviews(tmp_path)
    p = data_of(spec(tmp_path, "\n  min_count: 2", TEXT))
    ds, _ = datamod.prepare(p, 0, "index")
    assert ds.preprocessing is not None and ds.preprocessing.text is not None
    assert ds.preprocessing.text.vocabulary == ["common"]  # every w<i> is seen once
    p = data_of(spec(tmp_path, "\n  tokenizer: char", TEXT))
    ds, _ = datamod.prepare(p, 0, "index")
    tokens = ds.preprocessing.text if ds.preprocessing else None
    assert tokens is not None and tokens.split("W1 c") == ["w", "1", " ", "c"]
    vocab = tokens.vocabulary or []
    assert ds.x[0].tolist() == [2.0 + vocab.index(c) for c in "w0 c"]  # cut at max_length


def test_predict_and_eval_tokenise_new_text_rows_as_training_did(
    runner: CliRunner, tmp_path: Path
) -> None:
    reviews(tmp_path)
    run = train(runner, spec(tmp_path, text=TEXT), tmp_path)
    saved = json.loads((run / "preprocessing.json").read_text())
    assert saved["vocab_size"] == 19 and saved["text"]["vocabulary"][0] == "common"
    new = tmp_path / "new.csv"
    new.write_text("text,label\nw3 common,pos\nnever seen words here and more,neg\n")
    result = runner.invoke(app, ["predict", str(run), str(new)])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(io.StringIO(result.stdout))
    assert out["text"].tolist() == ["w3 common", "never seen words here and more"]
    assert set(out["prediction"]) <= {"neg", "pos"} and len(out) == 2
    from nncli.trained.evaluate import evaluate_run

    assert evaluate_run(run, new).n == 2
    assert evaluate_run(run).n == 4  # its own test split, tokenised with the stored vocabulary
    (tmp_path / "bad.csv").write_text("words\nw1\n")
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "bad.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "input: column 'text' is not in" in result.output
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 4)))
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "x.npz")])
    assert result.exit_code == 2
    assert "reads text; give its rows as a CSV with the column 'text'" in result.output


def test_text_columns_are_checked(runner: CliRunner, tmp_path: Path) -> None:
    path = reviews(tmp_path)
    err = refused(runner, spec(tmp_path, "\n  text: words", TEXT), tmp_path)
    assert "words.yaml" not in err and "data.text  column 'words' is not in" in err
    path.write_text(path.read_text().replace("w3 common", ""))
    err = refused(runner, spec(tmp_path, text=TEXT), tmp_path)
    assert "text column 'text' of" in err and "is empty on line 5; give each row text" in err


# --- generated sets ----------------------------------------------------------------------


def section(text: str):
    from datafiles import params

    return params(text)


def test_sines_are_windows_split_in_time_order() -> None:
    ds, idx = datamod.prepare(section("source: sines"), 0, "value")
    assert ds.x.shape == (980, 20, 1) and ds.y.shape == (980, 1)
    assert idx["train"].max() < idx["val"].min() and idx["val"].max() < idx["test"].min()
    again, _ = datamod.prepare(section("source: sines"), 0, "value")
    other, _ = datamod.prepare(section("source: sines"), 1, "value")
    assert np.array_equal(ds.x, again.x) and not np.array_equal(ds.x, other.x)


def test_marker_order_labels_which_marker_comes_first() -> None:
    ds = datamod.load(section("source: marker_order\nn_samples: 50\nlength: 6"), 0)
    assert ds.vocab_size == 12 and ds.x.shape == (50, 6)
    for row, label in zip(ds.x.tolist(), ds.y.tolist(), strict=True):
        assert row.count(2.0) == row.count(3.0) == 1 and min(row) >= 2 and max(row) < 12
        assert label == int(row.index(3.0) < row.index(2.0))
    assert 10 < ds.y.sum() < 40


GOOD = ("good", "great", "fine", "lovely", "superb", "pleasant")
BAD = ("bad", "awful", "poor", "boring", "terrible", "dull")


def test_text_sentiment_follows_its_rule_and_tokenises_from_train() -> None:
    ds, idx = datamod.prepare(section("source: text_sentiment\nn_samples: 80"), 0, "index")
    assert ds.texts is not None and ds.class_names == ["negative", "positive"]
    kinds = []
    for text, label in zip(ds.texts, ds.y.tolist(), strict=True):
        words = text.split()
        (at,) = [i for i, w in enumerate(words) if w in GOOD + BAD]
        negated = at > 0 and words[at - 1] == "not"  # a `not` elsewhere negates nothing
        assert label == int((words[at] in GOOD) != negated)
        kinds.append(("not" in words, negated))
    # a `not` that flips nothing is about as common as one that flips: its place decides
    assert min(kinds.count((True, False)), kinds.count((True, True))) >= 10
    pre = ds.preprocessing
    assert pre is not None and pre.text is not None and pre.vocab_size == ds.vocab_size
    train_words = {w for i in idx["train"] for w in ds.texts[i].split()}
    assert set(pre.text.vocabulary or []) == train_words


def test_a_flatten_dense_model_trains_on_sines_end_to_end(
    runner: CliRunner, tmp_path: Path
) -> None:
    text = SERIES.replace(
        "source: timeseries\n  path: series.csv\n  target: y\n  date: day\n  window: 4\n"
        "  horizon: 2\n  split: {{val: 0.2, test: 0.2}}{extra}",
        "source: sines\n  n_steps: 300",
    )
    run = train(runner, spec(tmp_path, text=text), tmp_path)
    from nncli.trained.evaluate import evaluate_run

    result = evaluate_run(run)
    assert result.n == round(0.2 * 280)  # (a pipeline check: no accuracy is claimed)


@pytest.mark.parametrize("kind", ["timeseries", "text"])
def test_an_interrupted_run_resumes_and_exports(
    kind: str, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import interrupted_run

    if kind == "timeseries":
        series_csv(tmp_path)
        path = spec(tmp_path, text=SERIES.replace("epochs: 30", "epochs: 3"))
    else:
        reviews(tmp_path)
        path = spec(tmp_path, text=TEXT)
    folder = interrupted_run(runner, path, tmp_path / "runs", monkeypatch)
    before = (folder / "preprocessing.json").read_bytes()
    result = runner.invoke(app, ["resume", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "run.json").read_text())["status"] == "completed"
    assert (folder / "preprocessing.json").read_bytes() == before
    result = runner.invoke(
        app, ["export", str(folder), "--to", "state_dict", "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "preprocessing.json").read_bytes() == before
