"""The device a run asks for: one this machine lacks is refused before any run folder
exists (exit 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TINY, refused
from typer.testing import CliRunner


def absent_cuda() -> list[tuple[str, str]]:
    """(device, message) for CUDA devices this machine lacks."""
    if not torch.cuda.is_available():
        return [
            (
                "cuda",
                "train.device is 'cuda' but this machine has no CUDA device (or this "
                "torch build has no CUDA support); use device: auto or cpu",
            )
        ]
    n = torch.cuda.device_count()
    return [
        (
            f"cuda:{n}",
            f"train.device is 'cuda:{n}' but only {n} CUDA device(s) exist "
            f"(cuda:0 to cuda:{n - 1})",
        )
    ]


@pytest.mark.parametrize(("device", "message"), absent_cuda())
def test_an_absent_cuda_device_is_refused_before_any_folder(
    runner: CliRunner, tiny: Path, tmp_path: Path, device: str, message: str
) -> None:
    setting = f"train.device={device}"
    stderr = refused(runner, tiny, tmp_path, "--set", setting)
    assert stderr.strip() == f"error --set {setting}  train.device  {message}"


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is present here")
def test_mps_off_apple_is_refused_before_any_folder(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    path = write(TINY.replace("device: cpu", "device: mps"))
    assert refused(runner, path, tmp_path).strip() == (
        f"error {path}:16:36  train.device  train.device is 'mps' but MPS (Apple GPU) is not available here; use auto or cpu"
    )
