"""data.augment in training: the transforms act on each training batch (each sample its own
draw), never on the held-out splits; mixes give soft targets; seeded runs repeat, and a run
killed mid-way resumes to the uninterrupted result."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Rows
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine.augment import Augment, build
from nncli.engine.fit import fit
from nncli.engine.prepare import prepare

CPU = torch.device("cpu")

DIGITS = """\
seed: {seed}
data:
  source: digits
  shape: [1, 8, 8]
  scale: 1/16
  standardize: false
  split: {{val: 0.1, test: 0.2}}
  augment: {augment}
model: {{layers: [{{conv2d: {{out_channels: 4, kernel_size: 3}}}}, relu, flatten, dense: 10]}}
loss: cross_entropy
train: {{epochs: {epochs}, batch_size: 64, device: cpu}}
"""


def digits(augment: str, seed: int = 0, epochs: int = 2) -> str:
    return DIGITS.format(augment=augment, seed=seed, epochs=epochs)


def built(augment: str, shape: tuple[int, ...] = (1, 8, 8), n_classes: int = 4) -> Augment:
    spec = validate(yamlio.loads(digits(augment), "exp.yaml"))
    made = build(spec.data.augment, shape, "cross_entropy", n_classes, CPU)
    assert made is not None
    return made


def test_a_sure_flip_mirrors_every_image_and_keeps_the_labels() -> None:
    x, y = torch.rand(16, 3, 5, 7), torch.arange(16) % 4
    out, target = built("[horizontal_flip: 1.0]", (3, 5, 7))(x, y)
    assert torch.equal(out, torch.flip(x, dims=[-1]))
    assert target is y


def test_each_sample_draws_its_own_parameters() -> None:
    # torchvision's v2 transforms on a batch flip all of it or none: kornia decides per image
    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 8, 8), torch.zeros(64, dtype=torch.long)
    out, _ = built("[horizontal_flip]")(x, y)
    flipped = [bool(torch.equal(o, torch.flip(i, dims=[-1]))) for o, i in zip(out, x, strict=True)]
    kept = [bool(torch.equal(o, i)) for o, i in zip(out, x, strict=True)]
    assert 10 < sum(flipped) < 54 and sum(flipped) + sum(kept) == 64


def test_a_padded_crop_shifts_pixels_and_keeps_the_shape() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8) + 1, torch.zeros(32, dtype=torch.long)  # no pixel is 0
    out, _ = built("[random_crop: 2]")(x, y)
    assert out.shape == x.shape
    moved = [not torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert sum(moved) >= 24  # 1 in 25 crops lands where it started
    # what a shift brings in is the padding's zeros; what stays is the image, shifted
    assert bool((out == 0).any()) and bool(((out == 0) | (out >= 1)).all())


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_a_mix_gives_soft_targets_in_the_shares_of_the_pixels(mix: str) -> None:
    # each image holds its label as every pixel's value: a mixed image's mean is then the
    # label shares' weighted mean, so the targets must say the shares the pixels hold
    torch.manual_seed(1)
    y = torch.arange(32) % 4
    x = y.float().view(-1, 1, 1, 1).expand(32, 1, 8, 8).contiguous()
    out, target = built(f"[{mix}]")(x, y)
    assert target.shape == (32, 4)
    assert torch.allclose(target.sum(1), torch.ones(32))
    mixed = target.max(1).values < 1
    assert int(mixed.sum()) >= 16  # most rows hold two classes
    expected = (target * torch.arange(4.0)).sum(1)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), expected, atol=1e-5)


def test_the_loss_of_soft_targets_is_the_shares_of_the_two_losses() -> None:
    torch.manual_seed(2)
    y = torch.arange(16) % 4
    _, target = built("[mixup]")(torch.rand(16, 1, 8, 8), y)
    logits = torch.randn(16, 4)
    loss = torch.nn.CrossEntropyLoss()(logits, target)
    each = -torch.log_softmax(logits, 1)
    a, b = target.topk(2, dim=1)  # the two classes of each row and their shares
    by_hand = a[:, 0] * each.gather(1, b[:, :1])[:, 0] + a[:, 1] * each.gather(1, b[:, 1:])[:, 0]
    assert torch.allclose(loss, by_hand.mean(), atol=1e-6)


def test_only_training_batches_are_augmented_and_eval_repeats_the_test_row(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    call = Augment.__call__

    def spy(self: Augment, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(len(x))
        return call(self, x, y)

    monkeypatch.setattr(Augment, "__call__", spy)
    path = write(digits("[random_crop: 1, rotation: 10, random_erasing: 0.5]"))
    result = runner.invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip())
    assert sum(seen) == 2 * 1259  # two epochs of the train split's 1259 digits, nothing else
    final = json.loads((run / "run.json").read_text())["final"]
    for split in ("test", "val"):
        scored = runner.invoke(app, ["eval", str(run), "-f", "json", "--split", split])
        assert scored.exit_code == 0, scored.output
        values = {r["metric"]: r["value"] for r in json.loads(scored.stdout)}
        assert values["loss"] == pytest.approx(final[f"{split}_loss"], rel=1e-5)
        assert values["accuracy"] == final[f"{split}_accuracy"]
    assert sum(seen) == 2 * 1259  # eval augmented nothing


def _rows(text: str) -> list[dict[str, float]]:
    p = prepare(validate(yamlio.loads(text, "exp.yaml")), "cpu")
    sink = Rows()
    fit(p, sink)
    return [{k: v for k, v in row.items() if k != "time_s"} for row in sink.rows]


def test_a_seed_repeats_an_augmented_run_and_another_seed_differs() -> None:
    augment = "[random_crop: 1, rotation: 10, {affine: {scale: [0.9, 1.1]}}, cutmix]"
    first = _rows(digits(augment))
    assert _rows(digits(augment)) == first
    plain = _rows(digits("[]"))
    assert [r["train_loss"] for r in plain] != [r["train_loss"] for r in first]
    # the same split and model start: only the augmentation's draws differ
    other = _rows(digits(augment).replace("rotation: 10", "rotation: 11"))
    assert [r["train_loss"] for r in other] != [r["train_loss"] for r in first]


# `python SCRIPT MARKER EPOCH nncli-args...`: nncli, paused after EPOCH's row and
# checkpoints are written (the pattern of tests/engine/test_kill.py)
PAUSE = """\
import sys, time
from pathlib import Path

marker, at, args = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
from nncli.loggers.run_folder import RunFolderLogger

logged = RunFolderLogger.epoch


def epoch(self, row, *rest, **kw):
    logged(self, row, *rest, **kw)
    if row["epoch"] == at:
        marker.write_text("paused")
        while True:
            time.sleep(0.05)


RunFolderLogger.epoch = epoch
sys.argv = ["nncli", *args]
from nncli.cli.app import main

main()
"""


def _nncli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nncli", *args], capture_output=True, text=True, check=False
    )


def _metrics(run: Path) -> list[list[str]]:
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name != "time_s"]
    return [[line.split(",")[i] for i in keep] for line in lines]


def _weights(run: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return state["model"]


@pytest.mark.slow
def test_a_killed_augmented_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    spec = tmp_path / "aug.yaml"
    spec.write_text(digits("[random_crop: 1, rotation: 10, mixup]", epochs=4))
    whole = _nncli("train", str(spec), "--runs-dir", str(tmp_path / "whole"), "-q")
    assert whole.returncode == 0, whole.stderr
    uninterrupted = Path(whole.stdout.strip())

    script, marker = tmp_path / "pause.py", tmp_path / "paused"
    script.write_text(PAUSE)
    args = ["train", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q"]
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker), "2", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not marker.is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "nncli did not reach epoch 2"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    (folder,) = (tmp_path / "runs").iterdir()
    assert len(_metrics(folder)) == 1 + 2  # header and the two epochs before the kill

    resumed = _nncli("resume", str(folder), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(folder) == _metrics(uninterrupted)
    mine, theirs = _weights(folder), _weights(uninterrupted)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_a_generated_source_reshaped_to_images_trains_augmented() -> None:
    # make_classification's parameters go to scikit-learn: augment is not one of them
    text = (
        "data: {source: make_classification, n_features: 16, shape: [1, 4, 4],\n"
        "       augment: [horizontal_flip, cutmix]}\n"
        "model: {layers: [flatten, dense: 2]}\nloss: cross_entropy\n"
        "train: {epochs: 1, device: cpu}\n"
    )
    (row,) = _rows(text)
    assert row["epoch"] == 1 and row["train_loss"] > 0
