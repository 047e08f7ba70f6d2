"""`nncli validate` checks what training would refuse of the data without torch: missing
files, columns a CSV lacks, outputs that cannot match the targets; each at FILE:LINE:COL,
in the words `nncli train` uses for the same file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.data.outline import _classes

CSV = """\
data:
  source: csv
  path: {path}
  target: {target}
model:
  layers:
    - dense: 8
    - relu
    - dense: {units}
loss: {loss}
train: {{epochs: 1, device: cpu}}
"""

ROWS = "a,b,label\n" + "".join(f"{i},{i % 4},{'xyz'[i % 3]}\n" for i in range(30))


def both(runner: CliRunner, path: Path, tmp_path: Path, *args: str) -> str:
    """stderr of `nncli validate`, checked to be what `nncli train` says (exit 2 each,
    nothing written)."""
    checked = runner.invoke(app, ["validate", str(path), *args])
    assert checked.exit_code == 2, checked.output
    assert checked.stdout == ""
    trained = runner.invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), *args])
    assert trained.exit_code == 2, trained.output
    assert not (tmp_path / "runs").exists()
    assert trained.stderr == checked.stderr
    return checked.stderr


@pytest.fixture
def table(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text(ROWS)
    return tmp_path / "data.csv"


def test_a_missing_csv_is_named_with_the_file_nearest_its_name(
    runner: CliRunner, write: Callable[..., Path], table: Path, tmp_path: Path
) -> None:
    path = write(CSV.format(path="dta.csv", target="label", units=3, loss="cross_entropy"))
    assert both(runner, path, tmp_path) == (
        f"error {path}:3:3  data.path  {tmp_path / 'dta.csv'} does not exist  "
        f"(did you mean {table}?)\n"
    )


def test_a_missing_folder_in_the_path_is_named_and_a_set_path_at_its_option(
    runner: CliRunner, write: Callable[..., Path], table: Path, tmp_path: Path
) -> None:
    (tmp_path / "tables").mkdir()
    path = write(CSV.format(path="data.csv", target="label", units=3, loss="cross_entropy"))
    setting = "data.path=tabels/data.csv"
    assert both(runner, path, tmp_path, "--set", setting) == (
        f"error --set {setting}  data.path  {tmp_path / 'tabels' / 'data.csv'} does not exist"
        f"  (did you mean {tmp_path / 'tables'}?)\n"
    )


def test_a_misspelt_column_is_named_at_its_key(
    runner: CliRunner, write: Callable[..., Path], table: Path, tmp_path: Path
) -> None:
    path = write(CSV.format(path="data.csv", target="lable", units=3, loss="cross_entropy"))
    assert both(runner, path, tmp_path) == (
        f"error {path}:4:3  data.target  column 'lable' is not in {table} (did you mean 'label'?)\n"
    )
    text = CSV.format(path="data.csv", target="label", units=3, loss="cross_entropy")
    path = write(text.replace("  target: label\n", "  target: label\n  features: [a, bb]\n"))
    assert both(runner, path, tmp_path) == (
        f"error {path}:5:3  data.features  column 'bb' is not in {table} (did you mean 'b'?)\n"
    )


def test_outputs_that_cannot_match_the_csv_classes_are_refused(
    runner: CliRunner, write: Callable[..., Path], table: Path, tmp_path: Path
) -> None:
    path = write(CSV.format(path="data.csv", target="label", units=2, loss="cross_entropy"))
    assert both(runner, path, tmp_path) == (
        f"error {path}:9:7  model.layers.2  loss 'cross_entropy' needs one output per class: "
        "the data has 3 classes but the model outputs 2; end the model with dense: 3\n"
    )
    path = write(CSV.format(path="data.csv", target="b", units=2, loss="mse"))
    assert both(runner, path, tmp_path) == (
        f"error {path}:9:7  model.layers.2  the model outputs 2 value(s) per sample but the "
        "data has 1 target(s); end the model with dense: 1\n"
    )


def test_two_sigmoid_outputs_on_a_binary_target_are_refused(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    path = write(TINY.replace("- dense: 1\n", "- dense: 2\n"))
    assert both(runner, path, tmp_path) == (
        f"error {path}:12:7  model.layers.2  the model outputs 2 value(s) per sample but the "
        "data has two classes (one output: the probability of class 1); end the model with "
        "dense: 1\n"
    )


@pytest.mark.parametrize(
    ("data", "classes"),
    [("iris", 3), ("{source: blobs, centers: 5}", 5), ("digits", 10), ("wine", 3)],
)
def test_the_classes_of_bundled_and_generated_sets_are_known(
    runner: CliRunner, write: Callable[..., Path], data: str, classes: int
) -> None:
    # `{dense: 8, activation: relu}` is two layers: the output layer is the file's item 1
    path = write(
        f"data: {data}\nmodel:\n  layers:\n    - {{dense: 8, activation: relu}}\n    - dense: 4\n"
        "loss: cross_entropy\n"
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error {path}:5:7  model.layers.1  loss 'cross_entropy' needs one output per class: "
        f"the data has {classes} classes but the model outputs 4; end the model with "
        f"dense: {classes}\n"
    )


def test_json_and_github_reports_carry_the_data_problems(
    runner: CliRunner, write: Callable[..., Path], table: Path
) -> None:
    path = write(CSV.format(path="data.csv", target="lable", units=3, loss="cross_entropy"))
    result = runner.invoke(app, ["validate", str(path), "--format", "json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)[0]["errors"] == [
        {
            "where": f"{path}:4:3",
            "key": "data.target",
            "message": f"column 'lable' is not in {table} (did you mean 'label'?)",
            "hint": None,
        }
    ]
    result = runner.invoke(app, ["validate", str(path), "--format", "github"])
    assert result.exit_code == 2
    assert result.stdout == (
        f"::error file={path},line=4,col=3,title=data.target::column 'lable' is not in "
        f"{table} (did you mean 'label'?)\n"
    )


def test_validate_of_a_csv_file_imports_neither_torch_nor_pandas(
    write: Callable[..., Path], table: Path
) -> None:
    path = write(CSV.format(path="data.csv", target="label", units=2, loss="cross_entropy"))
    code = textwrap.dedent(
        f"""
        import sys
        from nncli.cli.app import main
        sys.argv = ["nncli", "validate", {str(path)!r}]
        try:
            main()
        except SystemExit as exc:
            print("exit", exc.code)
        print(sorted(m for m in ("torch", "pandas", "matplotlib", "sklearn") if m in sys.modules))
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines()[-2:] == ["exit 2", "[]"], run.stdout + run.stderr
    assert "needs one output per class" in run.stderr


def test_labels_are_counted_as_training_reads_them(tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text("x,y\n1,1\n2,1.0\n3,2\n4,\n5,NA\n")
    assert _classes([one], "y") == 2  # 1 and 1.0 are one class; empty cells are none
    two = tmp_path / "two.csv"
    two.write_text("y,x\nTrue,1\nfalse,2\n\n3,3\n")
    assert _classes([two], "y") == 3  # text: what is written
    assert _classes([one, two], "y") == 5  # '1', '2' and 'True', 'false', '3' share none
    assert _classes([one, tmp_path / "absent.csv"], "y") is None


def test_a_missing_idx_file_is_named_at_its_key(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    # two 2x2 images, as IDX: two zero bytes, type 8 (bytes), 3 dimensions, sizes, pixels
    images = b"\0\0\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (2, 2, 2)) + bytes(8)
    (tmp_path / "images.idx").write_bytes(images)
    (tmp_path / "labels.idx.gz").write_bytes(b"")
    path = write(
        "data: {source: idx, images: images.idx, labels: labels.idx}\n"
        "model: {layers: [dense: 2]}\nloss: cross_entropy\n"
    )
    assert both(runner, path, tmp_path) == (
        f"error {path}:1:41  data.labels  {tmp_path / 'labels.idx'} does not exist  "
        f"(did you mean {tmp_path / 'labels.idx.gz'}?)\n"
    )
