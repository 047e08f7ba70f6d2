"""The user's files: CSV tables, NPZ arrays, IDX and MNIST files; and every error about them
names the file, column or key."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from datafiles import params, spec_text, tiny_images, write_idx, write_mnist
from typer.testing import CliRunner

from nncli import data as datamod
from nncli.cli.app import app
from nncli.errors import NncliError, SpecError


def csv_file(folder: Path, text: str, name: str = "d.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def error_of(section: str, loss_target: datamod.LossTarget | None = "index") -> str:
    with pytest.raises(NncliError) as info:
        datamod.prepare(params(section), 0, loss_target)
    return str(info.value)


# --- csv ---------------------------------------------------------------------------------

PETS = """\
weight,legs,colour,name,kind
4.1,4,black,rex,dog
3.9,4,white,tom,cat
0.2,2,green,polly,parrot
4.5,4,white,fido,dog
3.2,4,black,kitty,cat
0.3,2,red,kiwi,parrot
5.0,4,brown,max,dog
3.5,4,grey,luna,cat
0.25,2,green,rio,parrot
"""


def test_csv_string_labels_become_class_indices(tmp_path: Path) -> None:
    path = csv_file(tmp_path, PETS)
    p = params(f"source: csv\npath: {path}\ntarget: kind\nexclude: [name]\nsplit: {{test: 0}}")
    dataset = datamod.load(p, 0, "index")
    assert dataset.kind == "classification"
    assert dataset.class_names == ["cat", "dog", "parrot"]
    assert dataset.y.tolist() == [1, 0, 2, 1, 0, 2, 1, 0, 2]
    pre = dataset.preprocessing
    assert pre is not None
    assert pre.input_names == ["weight", "legs", "colour"]
    assert pre.columns == [
        "weight",
        "legs",
        "colour=black",
        "colour=brown",
        "colour=green",
        "colour=grey",
        "colour=red",
        "colour=white",
    ]
    np.testing.assert_allclose(dataset.x[0], [4.1, 4, 1, 0, 0, 0, 0, 0], rtol=1e-6)


def test_csv_features_categorical_and_task_choices(tmp_path: Path) -> None:
    path = csv_file(tmp_path, PETS)
    only = params(f"source: csv\npath: {path}\ntarget: kind\nfeatures: [weight]")
    assert datamod.load(only, 0).x.shape == (9, 1)
    legs = params(f"source: csv\npath: {path}\ntarget: kind\nfeatures: [legs]\ncategorical: [legs]")
    loaded = datamod.load(legs, 0)
    assert loaded.preprocessing is not None
    assert loaded.preprocessing.columns == ["legs=2", "legs=4"]
    # the loss decides whether whole numbers are classes or values
    numeric = params(f"source: csv\npath: {path}\ntarget: legs\nfeatures: [weight]")
    assert datamod.load(numeric, 0, "value").kind == "regression"
    assert datamod.load(numeric, 0, "index").kind == "classification"
    assert datamod.load(numeric, 0, "index").class_names == ["2", "4"]
    assert datamod.load(numeric, 0).kind == "classification"  # no loss: whole numbers
    weight = params(f"source: csv\npath: {path}\ntarget: weight\nexclude: [name]")
    assert datamod.load(weight, 0).kind == "regression"


def test_csv_several_target_columns_are_multilabel_with_a_binary_loss(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "a,b,red,big\n1,2,1,0\n2,1,0,1\n3,3,1,1\n0,0,0,0\n")
    p = params(f"source: csv\npath: {path}\ntarget: [red, big]")
    dataset = datamod.load(p, 0, "binary")
    assert dataset.kind == "multilabel"
    assert dataset.class_names == ["red", "big"]
    assert dataset.y.tolist() == [[1, 0], [0, 1], [1, 1], [0, 0]]
    assert datamod.load(p, 0, "value").kind == "regression"
    assert error_of(f"source: csv\npath: {path}\ntarget: [red, big]") == (
        "data.target names 2 columns but a classification loss takes one label column; "
        "for several 0/1 labels use loss: bce_with_logits (multi-label)"
    )
    bad = csv_file(tmp_path, "a,red,big\n1,1,0\n2,0,2\n", "bad.csv")
    assert error_of(f"source: csv\npath: {bad}\ntarget: [red, big]", "binary") == (
        f"target column 'big' of {bad} holds values other than 0 and 1 on line 3; "
        "multi-label targets are 0/1 per label"
    )


def test_csv_missing_values_name_column_and_lines(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "a,b,y\n1,2,0\n,3,1\n4,,0\n5,6,1\n,7,0\n8,9,1\n")
    section = f"source: csv\npath: {path}\ntarget: y\nsplit: {{test: 0}}"
    assert error_of(section) == (  # every column's, not only the first
        f"{path} has 2 problems, each to fix:\n"
        f"  column 'a' of {path} has missing values on lines 3, 6; fill them in, or set "
        "data.fill: mean (or median, zero)\n"
        f"  column 'b' of {path} has missing values on line 4; fill them in, or set "
        "data.fill: mean (or median, zero)"
    )
    filled, _ = datamod.prepare(params(section + "\nfill: mean\nstandardize: false"), 0)
    assert filled.x[:, 0].tolist() == [1, 4.5, 4, 5, 4.5, 8]  # mean of the train rows
    zero, _ = datamod.prepare(params(section + "\nfill: zero\nstandardize: false"), 0)
    assert zero.x[:, 1].tolist() == [2, 3, 0, 6, 7, 9]
    median, _ = datamod.prepare(params(section + "\nfill: median\nstandardize: false"), 0)
    assert median.x[2, 1] == 6
    # fill values come from the train split only
    half = params(section.replace("test: 0", "test: 0.5") + "\nfill: mean\nstandardize: false")
    data, indices = datamod.prepare(half, 0)
    raw = datamod.load(half, 0).x[indices["train"], 0]
    assert data.preprocessing is not None and data.preprocessing.fill_values is not None
    assert data.preprocessing.fill_values[0] == pytest.approx(np.nanmean(raw))


def test_csv_missing_category_is_all_zeros_with_a_fill(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "c,y\nred,0\n,1\nblue,0\nred,1\n")
    p = params(f"source: csv\npath: {path}\ntarget: y\nfill: zero\nsplit: {{test: 0}}")
    dataset, _ = datamod.prepare(p, 0)
    assert dataset.x.tolist() == [[0, 1], [0, 0], [1, 0], [0, 1]]


def test_csv_errors_name_the_file_column_and_key(tmp_path: Path) -> None:
    path = csv_file(tmp_path, PETS)
    assert error_of(f"source: csv\npath: {path}\ntarget: knd") == (
        f"data.target: column 'knd' is not in {path} (did you mean 'kind'?)"
    )
    assert error_of(f"source: csv\npath: {path}\ntarget: kind\nexclude: [zzz]") == (
        f"data.exclude: column 'zzz' is not in {path} "
        "(its columns: weight, legs, colour, name, kind)"
    )
    assert error_of(f"source: csv\npath: {path}\ntarget: kind\nfeatures: [kind]") == (
        "data.features: 'kind' is the target; it cannot be an input"
    )
    assert error_of(f"source: csv\npath: {tmp_path / 'nope.csv'}\ntarget: kind") == (
        f"data.path: {tmp_path / 'nope.csv'} does not exist"
    )
    assert error_of(f"source: csv\npath: {tmp_path}\ntarget: kind") == (
        f"data.path: {tmp_path} is a folder, not a file"
    )
    other = csv_file(tmp_path, "weight,kind\n1,cat\n", "other.csv")
    assert error_of(f"source: csv\npath: {path}\ntarget: kind\ntest_path: {other}") == (
        f"data.test_path: {other} lacks column(s) 'legs', 'colour', 'name' that {path} has"
    )
    assert error_of(f"source: csv\npath: {path}\ntarget: name", "value") == (
        f"target column 'name' of {path} holds text ('rex', 'tom', 'polly') on lines 2, 3, 4, "
        "5, 6 and 4 more; a regression target needs numbers (for classes use a "
        "classification loss such as cross_entropy)"
    )
    assert error_of(f"source: csv\npath: {path}\ntarget: kind\nmax_categories: 3") == (
        f"column 'colour' of {path} holds 6 distinct values, more than "
        "data.max_categories 3: exclude it (data.exclude), or raise max_categories to "
        "one-hot encode it"
    )
    empty = csv_file(tmp_path, "a,b\n", "empty.csv")
    assert error_of(f"source: csv\npath: {empty}\ntarget: b") == (
        f"data.path: {empty} has a header but no rows"
    )
    unlabelled = csv_file(tmp_path, "a,b\n1,x\n2,\n", "unlabelled.csv")
    assert error_of(f"source: csv\npath: {unlabelled}\ntarget: b") == (
        f"target column 'b' of {unlabelled} is empty on line 3; a target cannot be filled in: "
        "remove those rows"
    )


def test_train_with_a_missing_file_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    exp = tmp_path / "e.yaml"
    exp.write_text(spec_text("source: csv\npath: data/missing.csv\ntarget: y"))
    result = CliRunner().invoke(app, ["train", str(exp), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"error {exp}:4:3  data.path  {tmp_path / 'data' / 'missing.csv'} does not exist  "
        f"(relative paths are read from the experiment file's folder, {tmp_path})"
    )
    assert not (tmp_path / "runs").exists()


# --- npz ---------------------------------------------------------------------------------


def test_npz_arrays_with_named_keys(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", inputs=rng.normal(size=(20, 2, 3)), labels=np.arange(20) % 2)
    p = params(f"source: npz\npath: {tmp_path / 'a.npz'}\nx_key: inputs\ny_key: labels")
    dataset, _ = datamod.prepare(p, 0, "index")
    assert dataset.x.shape == (20, 2, 3)  # the arrays' own sample shape by default
    assert dataset.class_names == ["0", "1"]
    np.savez(tmp_path / "r.npz", x=rng.normal(size=(20, 3)), y=rng.normal(size=(20, 2)))
    reg, _ = datamod.prepare(params(f"source: npz\npath: {tmp_path / 'r.npz'}"), 0, "value")
    assert reg.kind == "regression" and reg.y.shape == (20, 2)
    np.savez(tmp_path / "s.npz", x=rng.normal(size=(6, 3)), y=np.array(["a", "b", "a"] * 2))
    text = datamod.load(params(f"source: npz\npath: {tmp_path / 's.npz'}"), 0, "index")
    assert text.class_names == ["a", "b"]


def test_npz_errors_name_the_file_and_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((4, 2)), y=np.zeros(4))
    path = tmp_path / "a.npz"
    assert error_of(f"source: npz\npath: {path}\nx_key: features") == (
        f"{path} has no array 'features' (data.x_key); its arrays: x, y"
    )
    (tmp_path / "bad.npz").write_text("not a zip")
    assert error_of(f"source: npz\npath: {tmp_path / 'bad.npz'}").startswith(
        f"{tmp_path / 'bad.npz'} cannot be read as .npz arrays:"
    )
    np.savez(tmp_path / "short.npz", x=np.zeros((4, 2)), y=np.zeros(3))
    assert error_of(f"source: npz\npath: {tmp_path / 'short.npz'}") == (
        f"{tmp_path / 'short.npz'}: 'y' must be (N,) or (N, T) with N = 4 rows of 'x', "
        "got shape (3,)"
    )
    np.savez(tmp_path / "nan.npz", x=np.array([[np.nan, 1.0]] * 4), y=np.zeros(4))
    assert error_of(f"source: npz\npath: {tmp_path / 'nan.npz'}") == (
        f"{tmp_path / 'nan.npz'}: 'x' holds nan on rows 0, 1, 2, 3; inputs and targets must "
        "be finite numbers within float32's range (±3.4e38)"
    )
    np.savez(tmp_path / "obj.npz", x=np.array([[{}]] * 4, dtype=object), y=np.zeros(4))
    # refused from its header, before numpy would refuse to unpickle it
    assert error_of(f"source: npz\npath: {tmp_path / 'obj.npz'}") == (
        f"{tmp_path / 'obj.npz'}: 'x' must hold numbers shaped (samples, features...), "
        "got object (4, 1)"
    )


# --- idx and mnist -----------------------------------------------------------------------


@pytest.mark.parametrize("zipped", [False, True], ids=["plain", "gzip"])
def test_idx_files_read_back(tmp_path: Path, zipped: bool) -> None:
    images, labels = tiny_images(12, side=5)
    write_idx(tmp_path / "i", images, zipped)
    write_idx(tmp_path / "l", labels, zipped)
    p = params(f"source: idx\nimages: {tmp_path / 'i'}\nlabels: {tmp_path / 'l'}\nscale: 1/255")
    dataset = datamod.load(p, 0)
    assert dataset.x.shape == (12, 25)
    np.testing.assert_array_equal(dataset.x, images.reshape(12, 25))
    assert dataset.y.tolist() == labels.tolist()
    prepared, _ = datamod.prepare(p.model_copy(update={"shape": [1, 5, 5]}), 0)
    assert prepared.x.shape == (12, 1, 5, 5)
    assert prepared.x.max() <= 1.0


def test_idx_errors_name_the_file(tmp_path: Path) -> None:
    images, labels = tiny_images(12, side=5)
    write_idx(tmp_path / "i", images)
    write_idx(tmp_path / "l", labels[:10])
    section = f"source: idx\nimages: {tmp_path / 'i'}\nlabels: {tmp_path / 'l'}"
    assert error_of(section) == (
        f"data.labels: {tmp_path / 'l'} holds labels shaped (10,) but {tmp_path / 'i'} has 12 "
        "images; they must pair one to one"
    )
    (tmp_path / "l").write_bytes((tmp_path / "i").read_bytes()[:-7])
    assert error_of(section) == (
        f"data.labels: {tmp_path / 'l'} is truncated: its header promises 12x5x5 values "
        "(300 bytes) but it holds 293 bytes"
    )
    (tmp_path / "l").write_bytes(b"PK\x03\x04junk")
    assert error_of(section) == (
        f"data.labels: {tmp_path / 'l'} is not an IDX file (it should start with two zero "
        "bytes, a type code and the number of dimensions)"
    )
    (tmp_path / "l").write_bytes(gzip.compress(b"\0\0\x08\x01")[:-4])
    assert error_of(section).startswith(f"data.labels: {tmp_path / 'l'} cannot be read:")
    with pytest.raises(SpecError) as info:
        params(section + f"\nval_images: {tmp_path / 'i'}")
    assert "data  give val_images and val_labels together" in str(info.value)


def test_mnist_reads_the_four_files_of_a_folder(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path / "mnist", zipped=False)
    p = params(f"source: mnist\nfolder: {folder}\nsplit: {{val: 0.25}}")
    dataset, indices = datamod.prepare(p, 0)
    assert {k: len(v) for k, v in indices.items()} == {"train": 30, "val": 10, "test": 10}
    assert indices["test"].tolist() == list(range(40, 50))  # the t10k files
    assert dataset.x.shape == (50, 784)
    assert dataset.x.max() <= 1.0  # scale 1/255 by default
    assert dataset.preprocessing is not None
    assert dataset.preprocessing.input_names[:2] == ["pixel0", "pixel1"]


def test_mnist_says_which_file_is_missing_and_where_they_come_from(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    message = error_of(f"source: mnist\nfolder: {folder}")
    assert message.startswith(
        f"data.folder: {folder / 't10k-labels-idx1-ubyte'}(.gz) is missing (MNIST needs all "
        "four of its files); nncli downloads nothing: get the four files of the MNIST "
        "database (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from "
    )
    assert message.endswith(f"mirrors, and put them in {folder}")
    assert error_of(f"source: mnist\nfolder: {tmp_path / 'none'}").startswith(
        f"data.folder: {tmp_path / 'none'} does not exist; nncli downloads nothing"
    )
    with pytest.raises(SpecError) as info:
        params(f"source: mnist\nfolder: {folder}\nsplit: {{test: 0.2}}")
    assert "MNIST's test split is its t10k files; hold out validation rows with split.val" in str(
        info.value
    )


def test_a_tiny_mnist_trains_end_to_end_with_conv_layers(
    tmp_path: Path, write: Callable[..., Path]
) -> None:
    folder = write_mnist(tmp_path / "mnist")
    text = spec_text(f"source: mnist\nfolder: {folder}\nshape: [1, 28, 28]", out=2).replace(
        "    - dense: 4\n", "    - conv2d: 2\n    - maxpool2d: 4\n    - flatten\n"
    )
    path = write(text)
    result = CliRunner().invoke(
        app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert (Path(result.stdout.strip()) / "preprocessing.json").is_file()
