"""Prepare: data too small for its split or batch, a model that does not fit the data, the
loss or the memory: each a clear message before any run folder exists (exit 2), or, where
training can go on, a warning."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY, refused
from typer.testing import CliRunner

from nncli.cli.app import app


def test_an_empty_split_is_refused_before_any_folder(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    path = write(TINY.replace("n_samples: 200", "n_samples: 4"))
    assert refused(runner, path, tmp_path).strip() == (
        f"error {path}:7:11  data.split.val  the val split of 4 samples is empty; use more "
        "samples or a larger fraction"
    )


def test_a_batch_larger_than_the_split_trains_with_a_warning(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    """Not an error: every step uses the whole split, which the warning says."""
    path = write(TINY.replace("batch_size: 32", "batch_size: 500"))
    result = runner.invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    warning = (
        "the train split has 120 rows, fewer than train.batch_size 500: every step uses all of them"
    )
    assert f"warning {warning}" in result.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert f"warning: {warning}" in (folder / "log.txt").read_text()
    assert json.loads((folder / "run.json").read_text())["status"] == "completed"


def refuses_huge_allocations() -> bool:
    """Whether the kernel refuses at once an allocation larger than its memory."""
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip() in ("0", "2")
    except OSError:
        return False


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            "[dense: 8, relu, flatten, conv1d: 2, dense: 1, sigmoid]",
            "model.layers.3  conv1d(out_channels=2, kernel_size=3, stride=1, padding=0, "
            "dilation=1, bias=True): conv1d needs an input of 2 dimension(s) per sample, got "
            "(8,); samples must be (channels, length); set data.shape",
        ),
        (
            "[dense: 8, {type: log_softmax, dim: 7}, dense: 1, sigmoid]",
            "model.layers.1  log_softmax(dim=7) cannot take input of shape (8,): "
            "Dimension out of range (expected to be in range of [-2, 1], but got 7)",
        ),
        (
            "[dense: 8, relu, dense: 1]",
            "loss  loss 'bce' takes probabilities, and torch stops a run at the first output "
            "outside 0..1; the model ends with dense (model.layers.2), whose outputs can leave "
            "that range (end the model with sigmoid, or use loss: bce_with_logits)",
        ),
        (
            "[dense: 8, relu, dense: 1, sigmoid, dropout: 0.5]",
            "loss  loss 'bce' takes probabilities, and torch stops a run at the first output "
            "outside 0..1; the model ends with dropout (model.layers.4), whose outputs can "
            "leave that range (end the model with sigmoid, or use loss: bce_with_logits)",
        ),
        (
            "[relu, sigmoid]",
            "model.layers  the model has no weights to train: model.layers holds no layer with "
            "parameters (dense, conv1d, conv2d, ...); add one, e.g. `- dense: 1`",
        ),
        (
            f"[dense: {2**62}, dense: 1, sigmoid]",
            f"model.layers.0  dense(units={2**62}, bias=True) cannot take input of "
            "shape (2,): Storage size calculation overflowed",
        ),
        pytest.param(
            "[dense: 100000000000, dense: 1, sigmoid]",
            "model.layers.0  dense(units=100000000000, bias=True) has 300,000,000,000 "
            "parameters (1,200.0 GB as float32), more than this machine can allocate",
            marks=pytest.mark.skipif(
                not refuses_huge_allocations(),
                reason="with vm.overcommit_memory=1 an 800 GB tensor is granted, then kills",
            ),
        ),
    ],
    ids=[
        "shape",
        "dimension",
        "bce-unbounded",
        "bce-dropout",
        "no-weights",
        "overflow",
        "out-of-memory",
    ],
)
def test_a_model_that_does_not_fit_is_named_before_any_folder(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, layers: str, message: str
) -> None:
    text = TINY.replace(
        "  layers:\n    - dense: 8\n    - tanh\n    - dense: 1\n    - sigmoid\n",
        f"  layers: {layers}\n",
    )
    path = write(text)
    stderr = refused(runner, path, tmp_path)
    lines = [line for line in stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1, stderr
    where = f"{path}:10:1" if message.startswith("loss") else f"{path}:9:"
    assert lines[0].startswith(f"error {where}"), lines[0]
    assert message in lines[0], lines[0]


def test_validate_build_runs_the_same_checks(runner: CliRunner, write: Callable[..., Path]) -> None:
    text = TINY.replace("    - sigmoid\n", "")
    result = runner.invoke(app, ["validate", "--build", str(write(text))])
    assert result.exit_code == 2, result.output
    assert "  loss  loss 'bce' takes probabilities" in result.stderr


def test_batchnorm_with_a_last_batch_of_one_sample_is_refused_up_front(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    # torch stopped the run in its first epoch: an internal error, a failed run folder
    text = TINY.replace("n_samples: 200", "n_samples: 161").replace(
        "val: 0.2, test: 0.2", ""
    )  # 129 train
    path = write(text.replace("- tanh", "- batchnorm1d"))
    assert refused(runner, path, tmp_path).splitlines()[-1] == (
        f"error {path}:16:20  train.batch_size  train.batch_size 32 leaves a batch of one sample of the 129 in the train "
        "split, and model.layers.1 (batchnorm1d) cannot train on one sample (Expected more "
        "than 1 value per channel when training, got input size torch.Size([1, 8])); use "
        "train.batch_size 33, or change the split so that no batch holds a single sample"
    )


@pytest.mark.parametrize(
    ("layers", "path"),
    [
        (
            "[dense: 8, residual: [dense: 8, batchnorm1d, tanh], dense: 1, sigmoid]",
            "model.layers.1.residual.layers.1 (batchnorm1d)",
        ),
        (
            "[dense: 8, unit: {repeat: 2}, dense: 1, sigmoid]\n"
            "  blocks: {unit: [parallel: {merge: add, branches: [[tanh], [batchnorm1d]]}]}",
            "model.layers.1 (block(name=unit, repeat=2)) > "
            "model.blocks.unit.0.parallel.branches.1.0 (batchnorm1d)",
        ),
    ],
    ids=["residual", "branch-in-block"],
)
def test_batchnorm_inside_a_nested_layer_with_a_batch_of_one_is_refused_at_its_path(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, layers: str, path: str
) -> None:
    # the guard looked at model.layers only: torch stopped the run in its first epoch
    text = TINY.replace("n_samples: 200", "n_samples: 161").replace("val: 0.2, test: 0.2", "")
    text = text.replace(
        "  layers:\n    - dense: 8\n    - tanh\n    - dense: 1\n    - sigmoid\n",
        f"  layers: {layers}\n",
    )
    spec = write(text)
    assert refused(runner, spec, tmp_path).splitlines()[-1] == (
        f"error {spec}:{13 if 'blocks' in layers else 12}:20  train.batch_size  "
        "train.batch_size 32 leaves a batch of one sample of the 129 in the train split, and "
        f"{path} cannot train on one sample (Expected more than 1 value per channel when "
        "training, got input size torch.Size([1, 8])); use train.batch_size 33, or change "
        "the split so that no batch holds a single sample"
    )


def test_a_layer_too_large_even_for_shapes_is_named(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    # "the model cannot be built: empty(): argument 'size' failed..." named no layer
    path = write(TINY.replace("- dense: 1\n", "- dense: " + "1" + "0" * 30 + "\n"))
    assert refused(runner, path, tmp_path).startswith(
        f"error {path}:12:7  model.layers.2  dense(units=1000000000000000000000000000000, "
        "bias=True) is "
        "too large to build, even without memory ("
    )
