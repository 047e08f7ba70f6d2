"""Values that passed validation and failed later (a diverged or NaN-metric run, a
MemoryError, an internal error): each is refused before any run folder exists, naming the
file, column or array and row, or the key."""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, refused
from typer.testing import CliRunner

from nncli.data.preprocess import Feature, Preprocessing
from nncli.errors import NncliError

RANGE = "finite numbers within float32's range (±3.4e38)"


def experiment(folder: Path, data: str, loss: str = "mse", layers: str = "[{dense: 1}]") -> Path:
    path = folder / "exp.yaml"
    path.write_text(
        f"data: {data}\nmodel: {{layers: {layers}}}\nloss: {loss}\n"
        "train: {epochs: 1, device: cpu}\n"
    )
    return path


def table(folder: Path, target: list[str], cell: tuple[int, int, str] | None = None) -> Path:
    """a.csv: columns a, b and y (the `target` values), one cell replaced by `cell`."""
    rows = [[f"{i / 7:.3f}", f"{(i * 3) % 5}", t] for i, t in enumerate(target)]
    if cell is not None:
        rows[cell[0]][cell[1]] = cell[2]
    path = folder / "a.csv"
    path.write_text("a,b,y\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def test_inf_in_a_csv_feature_names_the_column_and_line(runner: CliRunner, tmp_path: Path) -> None:
    # the run trained, diverged and was kept, with numpy's "invalid value" warnings
    csv = table(tmp_path, ["0", "1"] * 10, (3, 0, "inf"))
    path = experiment(tmp_path, f"{{source: csv, path: {csv}, target: y}}", "bce_with_logits")
    assert refused(runner, path, tmp_path) == (
        f"error {tmp_path / 'exp.yaml'}:1:21  data.path  "
        f"column 'a' of {csv} holds inf on line 5; inputs must be {RANGE}: fix or "
        "remove those rows\n"
    )


def test_a_csv_target_beyond_float32_names_the_column_and_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    # 1e39 became inf in float32: the run completed with NaN metrics
    csv = table(tmp_path, [str(i / 3) for i in range(20)], (6, 2, "1e39"))
    path = experiment(tmp_path, f"{{source: csv, path: {csv}, target: y}}")
    assert refused(runner, path, tmp_path) == (
        f"error {tmp_path / 'exp.yaml'}:1:21  data.path  "
        f"target column 'y' of {csv} holds 1e+39 on line 8; targets must be {RANGE}\n"
    )


def test_an_npz_input_beyond_float32_names_the_array_and_row(
    runner: CliRunner, tmp_path: Path
) -> None:
    x = np.ones((20, 3))
    x[4, 2] = 1e39
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(20.0) / 3)
    path = experiment(tmp_path, f"{{source: npz, path: {tmp_path / 'a.npz'}}}")
    assert refused(runner, path, tmp_path) == (
        f"error {tmp_path / 'exp.yaml'}:1:21  data.path  "
        f"{tmp_path / 'a.npz'}: 'x' holds 1e+39 on row 4; inputs and targets must be "
        f"{RANGE}\n"
    )


def test_nan_in_an_npz_regression_target_of_the_test_file_is_refused(
    runner: CliRunner, tmp_path: Path
) -> None:
    # the run completed, with NaN test metrics
    np.savez(tmp_path / "train.npz", x=np.ones((20, 3)), y=np.arange(20.0) / 3)
    y = np.arange(5.0) / 3
    y[2] = np.nan
    np.savez(tmp_path / "test.npz", x=np.ones((5, 3)), y=y)
    data = f"{{source: npz, path: {tmp_path / 'train.npz'}, test_path: {tmp_path / 'test.npz'}}}"
    assert refused(runner, experiment(tmp_path, data), tmp_path) == (
        f"error {tmp_path / 'exp.yaml'}:1:101  data.test_path  "
        f"{tmp_path / 'test.npz'}: 'y' holds nan on row 2; inputs and targets must be "
        f"{RANGE}\n"
    )


def test_a_generator_parameter_that_overflows_float32_is_named(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    path = write(TINY.replace("noise: 0.05", "noise: 1e300"))
    assert refused(runner, path, tmp_path) == (
        f"error {path}:6:3  data.noise  data.noise 1e+300 makes the generated numbers leave float32's range: they must "
        f"be {RANGE}; make it smaller\n"
    )


@pytest.fixture
def sixteen_gb(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with 16 GB available, whatever this one has."""
    monkeypatch.setattr("nncli.inputs.available_memory", lambda: 16 * 10**9)


@pytest.mark.usefixtures("sixteen_gb")
@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            "n_samples: 200",
            "n_samples: 100000000000",
            "data.n_samples 100,000,000,000 (200,000,000,000 values) needs about 6.4 TB",
        ),
        (
            "source: circles\n  n_samples: 200\n  noise: 0.05",
            "source: blobs\n  n_samples: 10\n  n_features: 1000000000000",
            "data.n_samples 10, data.n_features 1,000,000,000,000 (13,000,000,000,000 values) "
            "needs about 416.0 TB",
        ),
    ],
)
def test_generated_data_larger_than_memory_is_refused_before_it_is_made(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    before: str,
    after: str,
    expected: str,
) -> None:
    # a MemoryError traceback, or "internal error"
    path = write(TINY.replace(before, after))
    assert refused(runner, path, tmp_path) == (
        f"error {path}:5:3  data.n_samples  {expected} of memory, more than the 16.0 GB this machine has available; "
        "lower them\n"
    )


def _npy_header(shape: tuple[int, ...]) -> bytes:
    f = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)  # type: ignore[no-untyped-call]
    return f.getvalue()


@pytest.mark.usefixtures("sixteen_gb")
def test_an_npz_that_would_unpack_past_memory_is_refused_from_its_header(
    runner: CliRunner, tmp_path: Path
) -> None:
    # a compressed array of zeros (or a header that claims one) unpacked into a MemoryError
    npz = tmp_path / "bomb.npz"
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("x.npy", _npy_header((10**6, 10**6)))
        archive.writestr("y.npy", _npy_header((10**6,)))
    path = experiment(tmp_path, f"{{source: npz, path: {npz}}}")
    assert refused(runner, path, tmp_path) == (
        f"error {tmp_path / 'exp.yaml'}:1:21  data.path  "
        f"{npz} (x, y) needs about 12.0 TB of memory, more than the 16.0 GB this "
        "machine has available; use a smaller file\n"
    )


def test_a_preprocessing_file_whose_shape_disagrees_with_its_features_is_damaged(
    tmp_path: Path,
) -> None:
    # the run's model was then built for 1e13 inputs: a MemoryError at predict
    features = [Feature(name="a"), Feature(name="b")]
    pre = Preprocessing(
        source="npz", features=features, kind="regression", targets=["y"], shape=[10**7, 10**6]
    )
    path = tmp_path / "preprocessing.json"
    path.write_text(pre.model_dump_json())
    with pytest.raises(NncliError) as info:
        Preprocessing.read(path)
    assert str(info.value) == (
        f"{path} is damaged: its shape [10000000, 1000000] holds 10,000,000,000,000 values "
        "but its features make 2 input column(s); train the run again"
    )


def test_an_npz_of_no_rows_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((0, 3)), y=np.zeros(0))
    path = experiment(tmp_path, f"{{source: npz, path: {tmp_path / 'a.npz'}}}")
    assert refused(runner, path, tmp_path) == (
        f"error {tmp_path / 'exp.yaml'}:1:21  data.path  {tmp_path / 'a.npz'}: 'x' has no rows\n"
    )


def test_fractions_with_a_classification_loss_are_not_class_labels(
    runner: CliRunner, tmp_path: Path
) -> None:
    # each value became a class of its own, and the message said "the test split is empty"
    csv = table(tmp_path, [f"{i / 3:.2f}" for i in range(20)])
    data = f"{{source: csv, path: {csv}, target: y}}"
    path = experiment(tmp_path, data, "cross_entropy", "[{dense: 20}]")
    assert refused(runner, path, tmp_path) == (
        f"error {tmp_path / 'exp.yaml'}:1:21  data.path  "
        f"target column 'y' of {csv} holds 0.33, 0.67, 1.33 on lines 3, 4, 6, 7, 9 and "
        "8 more: numbers, not class labels; a classification loss (such as cross_entropy) "
        "needs whole numbers or text per class, and values need a regression loss (mse, mae, "
        "huber)\n"
    )


def test_a_target_of_one_class_is_refused_as_such(runner: CliRunner, tmp_path: Path) -> None:
    # it said: use loss cross_entropy with a final dense: 1 (which cannot learn either)
    csv = table(tmp_path, ["1"] * 20)
    path = experiment(tmp_path, f"{{source: csv, path: {csv}, target: y}}", "bce_with_logits")
    column = path.read_text().splitlines()[0].index("target: y") + 1
    assert refused(runner, path, tmp_path) == (
        f"error {path}:1:{column}  data.target  the target holds one class ('1') in all 20 "
        "rows; a classifier needs rows of at least two classes\n"
    )


@pytest.mark.parametrize("kind", ["device", "fifo", "no user"])
def test_a_data_path_that_is_not_a_regular_file_is_refused(
    runner: CliRunner, tmp_path: Path, kind: str
) -> None:
    # /dev/zero and a FIFO were "does not exist"; ~nosuchuser a RuntimeError traceback
    given = {"device": "/dev/zero", "fifo": str(tmp_path / "fifo"), "no user": "~nosuchuser/a.csv"}
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo")
    path = experiment(tmp_path, f"{{source: csv, path: '{given[kind]}', target: y}}")
    expected = {
        "device": f"{path}:1:21  data.path  /dev/zero is not a regular file (a device, a pipe or a socket); "
        "name a file",
        "fifo": f"{path}:1:21  data.path  {tmp_path / 'fifo'} is not a regular file (a device, a pipe or a "
        "socket); name a file",
        "no user": "data.path: ~nosuchuser/a.csv starts with ~nosuchuser, but no user "
        "'nosuchuser' has a home folder here; write the path in full",
    }
    assert refused(runner, path, tmp_path) == f"error {expected[kind]}\n"


def test_a_csv_larger_than_memory_is_refused_from_its_first_rows(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it was read whole into a MemoryError
    monkeypatch.setattr("nncli.inputs.available_memory", lambda: 2 * 10**6)
    csv = table(tmp_path, [str(i % 2) for i in range(150_000)])
    frame_and_copy = 150_000 * 3 * (8 + 4)  # three int64/float64 columns, and float32
    path = experiment(tmp_path, f"{{source: csv, path: {csv}, target: y}}", "bce_with_logits")
    message = refused(runner, path, tmp_path)
    found = re.fullmatch(
        rf"error {re.escape(str(path))}:1:\d+  data\.path  {re.escape(str(csv))} \((.+) MB, about "
        r"([\d,]+) rows\) needs about "
        r"(.+) MB of memory, more than the 2\.0 MB this machine has available; use a smaller "
        r"file, or fewer columns\n",
        message,
    )
    assert found is not None, message
    on_disk, rows, needed = (float(g.replace(",", "")) for g in found.groups())
    assert on_disk == round(csv.stat().st_size / 1e6, 1)
    # estimated from the first MB: within 5% of the truth
    assert abs(rows - 150_000) / 150_000 < 0.05
    assert abs(needed * 1e6 - frame_and_copy) / frame_and_copy < 0.05


@pytest.mark.usefixtures("sixteen_gb")
def test_an_idx_file_larger_than_memory_is_refused_from_its_header(
    runner: CliRunner, tmp_path: Path
) -> None:
    # refused only past a fixed 8 GB, whatever the machine had
    images, labels = tmp_path / "images.idx", tmp_path / "labels.idx"
    images.write_bytes(b"\0\0\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (10**6, 99, 99)))
    labels.write_bytes(b"\0\0\x08\x01" + (10**6).to_bytes(4, "big") + bytes(10**6))
    path = experiment(
        tmp_path, f"{{source: idx, images: {images}, labels: {labels}}}", "cross_entropy"
    )
    assert refused(runner, path, tmp_path) == (
        f"error {path}:1:21  data.images  {images} (1000000x99x99) needs about 49.0 GB of memory, more "
        "than the 16.0 GB this machine has available; use a smaller file\n"
    )
