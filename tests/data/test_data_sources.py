"""Every data source builds; splits, standardisation and reshaping behave as documented."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datafiles import params, spec_text, tiny_images, write_idx, write_mnist
from typer.testing import CliRunner

from nncli import data as datamod
from nncli.cli.app import app
from nncli.config.spec import load_spec
from nncli.data import datasets
from nncli.errors import NncliError, SpecError


def write_table(path: Path, n: int = 30) -> Path:
    rng = np.random.default_rng(1)
    rows = ["size,colour,kind"]
    for i in range(n):
        kind = ("cat", "dog", "emu")[i % 3]
        rows.append(f"{rng.normal(10 * (i % 3), 1):.3f},{('red', 'blue')[i % 2]},{kind}")
    path.write_text("\n".join(rows) + "\n")
    return path


def file_source(name: str, folder: Path) -> str:
    """A data section for each file-reading source, on files written under `folder`."""
    if name == "csv":
        return f"source: csv\npath: {write_table(folder / 't.csv')}\ntarget: kind"
    if name == "parquet":
        pd.read_csv(write_table(folder / "t.csv")).to_parquet(folder / "t.parquet")
        return f"source: parquet\npath: {folder / 't.parquet'}\ntarget: kind"
    if name == "npz":
        x = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
        np.savez(folder / "a.npz", x=x, y=np.arange(30) % 3)
        return f"source: npz\npath: {folder / 'a.npz'}"
    if name == "npy":
        x = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
        np.save(folder / "x.npy", x)
        np.save(folder / "y.npy", np.arange(30) % 3)
        return f"source: npy\nx: {folder / 'x.npy'}\ny: {folder / 'y.npy'}"
    if name == "idx":
        images, labels = tiny_images(30, side=6)
        write_idx(folder / "i.idx", images)
        write_idx(folder / "l.idx", labels)
        return f"source: idx\nimages: {folder / 'i.idx'}\nlabels: {folder / 'l.idx'}"
    if name == "images":
        from test_images import write_folder

        return f"source: images\npath: {write_folder(folder / 'images')}\nsize: [6, 6]"
    if name == "text":
        (folder / "s.csv").write_text("text,label\n" + "good film,pos\nbad plot,neg\n" * 10)
        return f"source: text\npath: {folder / 's.csv'}\ntarget: label"
    if name == "timeseries":
        (folder / "ts.csv").write_text("y\n" + "".join(f"{i % 7}\n" for i in range(40)))
        return f"source: timeseries\npath: {folder / 'ts.csv'}\ntarget: y"
    assert name == "mnist"
    return f"source: mnist\nfolder: {write_mnist(folder / 'mnist')}"


FILE_SOURCES = ("csv", "parquet", "npz", "npy", "idx", "mnist", "images", "text", "timeseries")


@pytest.mark.parametrize("name", [e.name for e in datasets])
def test_every_source_prepares_model_inputs(name: str, tmp_path: Path) -> None:
    section = file_source(name, tmp_path) if name in FILE_SOURCES else f"source: {name}"
    p = params(section)
    dataset, indices = datamod.prepare(p, seed=0)
    pre = dataset.preprocessing
    assert pre is not None
    assert dataset.x.dtype == np.float32
    assert dataset.x.shape == (len(dataset.y), *pre.shape)
    assert np.isfinite(dataset.x).all()
    assert set(indices) >= {"train"}
    rows = np.concatenate(list(indices.values()))
    assert len(np.unique(rows)) == len(rows)  # no row in two splits
    if dataset.kind == "classification":
        assert dataset.y.dtype == np.int64 and dataset.y.ndim == 1
        assert dataset.y.max() < len(dataset.class_names or [])
    elif dataset.kind == "regression":
        assert dataset.y.dtype == np.float32 and dataset.y.ndim == 2
    else:
        assert set(np.unique(dataset.y)) <= {0, 1} and dataset.y.ndim == 2
    if pre.standardize:
        assert pre.mean is not None and pre.std is not None
    assert len(pre.columns) == int(np.prod(pre.shape))


def test_bundled_sets_have_their_names_and_sizes() -> None:
    iris, _ = datamod.prepare(params("source: iris"), 0)
    assert iris.class_names == ["setosa", "versicolor", "virginica"]
    assert iris.preprocessing is not None
    assert iris.preprocessing.input_names[0] == "sepal length (cm)"
    assert iris.preprocessing.targets == ["species"]
    cancer, _ = datamod.prepare(params("source: breast_cancer"), 0)
    assert cancer.x.shape == (569, 30)
    assert cancer.class_names == ["malignant", "benign"]
    wine, _ = datamod.prepare(params("source: wine"), 0)
    assert wine.x.shape == (178, 13)
    diabetes = datamod.load(params("source: diabetes"), 0)
    assert diabetes.kind == "regression"
    assert diabetes.x[:, 0].max() > 50  # age in years: unscaled, as a user's rows are


def test_digits_flat_or_as_images() -> None:
    flat, _ = datamod.prepare(params("source: digits"), 0)
    assert flat.x.shape == (1797, 64)
    assert flat.x.max() == 1.0  # scale defaults to 1/16: pixels 0..16 -> 0..1
    images, _ = datamod.prepare(params("source: digits\nshape: [1, 8, 8]"), 0)
    assert images.x.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(images.x.reshape(1797, 64), flat.x)


def test_scale_accepts_a_fraction_and_refuses_nonsense() -> None:
    assert params("source: digits\nscale: 1/255").scale == pytest.approx(1 / 255)
    assert params("source: digits\nscale: 0.5").scale == 0.5
    with pytest.raises(SpecError) as info:
        params("source: digits\nscale: 1/0")
    assert "data.scale  Input should be a valid number, got '1/0'" in str(info.value)
    with pytest.raises(SpecError) as info:
        params("source: digits\nscale: -2")
    assert "Input should be greater than 0" in str(info.value)


def test_shape_that_does_not_hold_the_features_is_an_error() -> None:
    with pytest.raises(NncliError) as info:
        datamod.prepare(params("source: digits\nshape: [1, 28, 28]"), 0)
    assert str(info.value) == (
        "data.shape [1, 28, 28] holds 784 values but each sample of digits has 64 (64)"
    )


def test_transform_overwrites_only_when_asked_and_allowed(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", n=40)
    p = params(f"source: csv\npath: {path}\ntarget: kind\nsplit: {{test: 0.5}}")
    dataset, _ = datamod.prepare(p, 3)
    pre = dataset.preprocessing
    assert pre is not None and pre.mean is not None
    raw = datamod.load(p, 3).x
    kept = raw.copy()
    expected = pre.transform(raw)  # a new array; raw as it was
    np.testing.assert_array_equal(raw, kept)
    np.testing.assert_allclose(expected, dataset.x)
    in_place = pre.transform(raw, overwrite=True)  # the same numbers, in raw's own memory
    assert np.shares_memory(in_place, raw)
    np.testing.assert_array_equal(in_place, expected)
    frozen = kept.copy()
    frozen.flags.writeable = False  # e.g. read straight from a file's buffer: copied
    out = pre.transform(frozen, overwrite=True)
    assert not np.shares_memory(out, frozen)
    np.testing.assert_array_equal(out, expected)
    # nothing to fit: the layout comes back as it is, without copying the train rows
    plain = pre.model_copy(update={"standardize": False, "mean": None, "std": None})
    assert plain.fit(raw, np.arange(10)) is plain


def test_standardisation_uses_the_train_split_only(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", n=60)
    p = params(f"source: csv\npath: {path}\ntarget: kind\nsplit: {{test: 0.5}}")
    raw = datamod.load(p, 3)
    dataset, indices = datamod.prepare(p, 3)
    pre = dataset.preprocessing
    assert pre is not None and pre.mean is not None and pre.std is not None
    train = raw.x[indices["train"], 0].astype(np.float64)
    assert pre.mean[0] == pytest.approx(train.mean())
    assert pre.std[0] == pytest.approx(train.std())
    assert pre.mean[0] != pytest.approx(raw.x[:, 0].mean(), abs=1e-3)
    # one-hot columns are left as 0/1
    assert pre.columns == ["size", "colour=blue", "colour=red"]
    assert pre.mean[1:] == [0.0, 0.0] and pre.std[1:] == [1.0, 1.0]
    assert dataset.x[indices["train"], 0].mean() == pytest.approx(0, abs=1e-5)
    assert dataset.x[indices["train"], 0].std() == pytest.approx(1, abs=1e-4)
    assert set(np.unique(dataset.x[:, 1:])) == {0.0, 1.0}
    off, _ = datamod.prepare(p.model_copy(update={"standardize": False}), 3)
    np.testing.assert_array_equal(off.x, raw.x)


def test_splits_are_seeded_and_stratified() -> None:
    p = params("source: iris\nsplit: {val: 0.2, test: 0.2}")
    dataset = datamod.load(p, 0)
    first = datamod.split(dataset, p.split, 5)
    again = datamod.split(dataset, p.split, 5)
    other = datamod.split(dataset, p.split, 6)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first[name], again[name])
        assert np.bincount(dataset.y[first[name]]).tolist() == (
            [30, 30, 30] if name == "train" else [10, 10, 10]
        )
    assert not np.array_equal(first["test"], other["test"])


def test_a_class_missing_from_train_is_an_error_and_from_test_a_warning(tmp_path: Path) -> None:
    rows = ["a,label"] + [f"{i},{'x' if i < 20 else 'y'}" for i in range(22)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    p = params(f"source: csv\npath: {tmp_path / 't.csv'}\ntarget: label\nsplit: {{test: 0.2}}")
    dataset, _ = datamod.prepare(p, 0, batch_size=64)
    assert dataset.warnings == [
        "the test split (4 rows) has no rows of class(es) 'y'; its metrics leave them out "
        "(use a larger data.split fraction or more data)",
        "the train split has 18 rows, fewer than train.batch_size 64: every step uses all of them",
    ]
    (tmp_path / "test.csv").write_text("a,label\n1,z\n2,x\n")
    given = p.model_copy(update={"test_path": str(tmp_path / "test.csv")})
    with pytest.raises(NncliError) as info:
        datamod.prepare(given, 0)
    assert str(info.value) == (
        "class(es) 'z' have no rows in the train split (22 rows), so the model cannot learn "
        "them; add rows of them or remove them from the data"
    )
    assert info.value.key == "data.split"  # located there by the CLI


def test_an_empty_split_says_how_to_fix_it() -> None:
    p = params("source: xor\nsplit: {test: 0.1}")
    with pytest.raises(NncliError) as info:
        datamod.prepare(p, 0)
    assert str(info.value) == (
        "the test split of 4 samples is empty; use more samples or a larger fraction"
    )


def test_files_give_splits_instead_of_fractions(tmp_path: Path) -> None:
    write_table(tmp_path / "train.csv", 30)
    write_table(tmp_path / "val.csv", 6)
    write_table(tmp_path / "test.csv", 9)
    p = params(
        f"source: csv\npath: {tmp_path / 'train.csv'}\ntarget: kind\n"
        f"val_path: {tmp_path / 'val.csv'}\ntest_path: {tmp_path / 'test.csv'}"
    )
    assert (p.split.val, p.split.test) == (0.0, 0.0)  # the files replace the fractions
    _, indices = datamod.prepare(p, 0)
    assert indices["val"].tolist() == list(range(30, 36))
    assert indices["test"].tolist() == list(range(36, 45))
    assert sorted(indices["train"].tolist()) == list(range(30))
    # a fraction still carves validation rows out of the train file
    q = params(
        f"source: csv\npath: {tmp_path / 'train.csv'}\ntarget: kind\n"
        f"test_path: {tmp_path / 'test.csv'}\nsplit: {{val: 0.2}}"
    )
    _, parts = datamod.prepare(q, 0)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (24, 6, 9)
    assert parts["val"].max() < 30
    with pytest.raises(SpecError) as info:
        params(
            f"source: csv\npath: {tmp_path / 'train.csv'}\ntarget: kind\n"
            f"test_path: {tmp_path / 'test.csv'}\nsplit: {{test: 0.3}}"
        )
    assert "split.test and test_path both give the test split; remove one" in str(info.value)


def test_relative_paths_resolve_from_the_experiment_folder(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    (folder / "data").mkdir(parents=True)
    write_table(folder / "data" / "t.csv")
    text = spec_text("source: csv\npath: data/t.csv\ntarget: kind\ntest_path: ./data/t.csv")
    (folder / "e.yaml").write_text(text)
    spec = load_spec(folder / "e.yaml")
    assert spec.data.path == str(folder / "data" / "t.csv")  # type: ignore[attr-defined]
    assert spec.data.test_path == str(folder / "data" / "t.csv")  # type: ignore[attr-defined]
    overridden = load_spec(folder / "e.yaml", ["data.path=../elsewhere.csv"])
    assert overridden.data.path == str(tmp_path / "elsewhere.csv")  # type: ignore[attr-defined]
    absolute = load_spec(folder / "e.yaml", [f"data.path={tmp_path / 'x.csv'}"])
    assert absolute.data.path == str(tmp_path / "x.csv")  # type: ignore[attr-defined]


def test_generator_parameters_that_cannot_work_are_named() -> None:
    p = params("source: make_classification\nn_features: 2\nn_informative: 1\nn_redundant: 1")
    with pytest.raises(NncliError) as info:
        datamod.prepare(p, 0)
    assert str(info.value).startswith("data (make_classification): n_classes(2) * n_clusters")


def test_generators_are_seeded() -> None:
    for name in ("make_classification", "make_regression", "make_multilabel_classification"):
        a, _ = datamod.prepare(params(f"source: {name}\nn_samples: 50"), 1)
        b, _ = datamod.prepare(params(f"source: {name}\nn_samples: 50"), 1)
        np.testing.assert_array_equal(a.x, b.x)


def test_validate_imports_neither_pandas_nor_sklearn(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(
        spec_text(f"source: csv\npath: {write_table(tmp_path / 't.csv')}\ntarget: kind")
    )
    code = (
        "import sys\n"
        "from nncli.cli.app import main\n"
        f"sys.argv = ['nncli', 'validate', {str(path)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'pandas', 'matplotlib', 'sklearn') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "data csv" in out.stdout


def test_list_datasets_shows_every_source_with_its_parameters() -> None:
    result = CliRunner().invoke(app, ["list", "datasets", "--format", "csv"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert set(rows) >= {"digits", "iris", "wine", "breast_cancer", "diabetes", "csv", "npz"}
    assert set(rows) >= {"idx", "mnist", "make_classification", "make_regression"}
    assert "path (required), target (required)" in rows["csv"]["parameters"]
    assert "fill=None" in rows["csv"]["parameters"]
    assert "folder (required)" in rows["mnist"]["parameters"]
    assert "scale=0.0625, standardize=False" in rows["digits"]["parameters"]


def test_data_warnings_are_shown_and_logged(tmp_path: Path) -> None:
    exp = tmp_path / "e.yaml"
    exp.write_text(spec_text("source: xor", out=2))
    result = CliRunner().invoke(app, ["train", str(exp), "--runs-dir", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    warning = (
        "the train split has 4 rows, fewer than train.batch_size 8: every step uses all of them"
    )
    assert f"warning {warning}" in result.stderr
    folder = Path(result.stdout.strip())
    assert f"warning: {warning}" in (folder / "log.txt").read_text()
