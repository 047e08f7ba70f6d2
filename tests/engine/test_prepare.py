"""Prepare: data too small for its split or batch, a model that does not fit the data, the
loss or the memory: each a clear message before any run folder exists (exit 2), or, where
training can go on, a warning."""

from __future__ import annotations

import json
import re
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
        "error the val split of 4 samples is empty; use more samples or a larger fraction"
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
            "error model.layers.3 (conv1d(out_channels=2, kernel_size=3, stride=1, padding=0, "
            "dilation=1, bias=True)): conv1d needs an input of 2 dimension(s) per sample, got "
            "(8,); samples must be (channels, length); set data.shape",
        ),
        (
            "[dense: 8, {type: log_softmax, dim: 7}, dense: 1, sigmoid]",
            "error model.layers.1 (log_softmax(dim=7)) cannot take input of shape (8,): "
            "Dimension out of range (expected to be in range of [-2, 1], but got 7)",
        ),
        (
            "[dense: 8, relu, dense: 1]",
            "error loss 'bce' takes probabilities, and torch stops a run at the first output "
            "outside 0..1; the model ends with dense (model.layers.2), whose outputs can leave "
            "that range (end the model with sigmoid, or use loss: bce_with_logits)",
        ),
        (
            "[dense: 8, relu, dense: 1, sigmoid, dropout: 0.5]",
            "error loss 'bce' takes probabilities, and torch stops a run at the first output "
            "outside 0..1; the model ends with dropout (model.layers.4), whose outputs can "
            "leave that range (end the model with sigmoid, or use loss: bce_with_logits)",
        ),
        (
            "[relu, sigmoid]",
            "error the model has no weights to train: model.layers holds no layer with "
            "parameters (dense, conv1d, conv2d, ...); add one, e.g. `- dense: 1`",
        ),
        (
            f"[dense: {2**62}, dense: 1, sigmoid]",
            f"error model.layers.0 (dense(units={2**62}, bias=True)) cannot take input of "
            "shape (2,): Storage size calculation overflowed",
        ),
        pytest.param(
            "[dense: 100000000000, dense: 1, sigmoid]",
            "error model.layers.0 (dense(units=100000000000, bias=True)) has 300,000,000,000 "
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
    stderr = refused(runner, write(text), tmp_path)
    lines = [line for line in stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1, stderr
    # a layer that does not fit is also placed in the file (tests/test_blocks.py checks where)
    assert re.sub(r"^error \S+exp\.yaml:\d+:\d+: ", "error ", lines[0]).startswith(message)


def test_validate_build_runs_the_same_checks(runner: CliRunner, write: Callable[..., Path]) -> None:
    text = TINY.replace("    - sigmoid\n", "")
    result = runner.invoke(app, ["validate", "--build", str(write(text))])
    assert result.exit_code == 2, result.output
    assert "error loss 'bce' takes probabilities" in result.stderr


def test_batchnorm_with_a_last_batch_of_one_sample_is_refused_up_front(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    # torch stopped the run in its first epoch: an internal error, a failed run folder
    text = TINY.replace("n_samples: 200", "n_samples: 161").replace(
        "val: 0.2, test: 0.2", ""
    )  # 129 train
    path = write(text.replace("- tanh", "- batchnorm1d"))
    assert refused(runner, path, tmp_path).splitlines()[-1] == (
        "error train.batch_size 32 leaves a batch of one sample of the 129 in the train "
        "split, and model.layers.1 (batchnorm1d) cannot train on one sample (Expected more "
        "than 1 value per channel when training, got input size torch.Size([1, 8])); use "
        "train.batch_size 33, or change the split so that no batch holds a single sample"
    )


def test_a_layer_too_large_even_for_shapes_is_named(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    # "the model cannot be built: empty(): argument 'size' failed..." named no layer
    path = write(TINY.replace("- dense: 1\n", "- dense: " + "1" + "0" * 30 + "\n"))
    assert refused(runner, path, tmp_path).startswith(
        "error model.layers.2 (dense(units=1000000000000000000000000000000, bias=True)) is "
        "too large to build, even without memory ("
    )
