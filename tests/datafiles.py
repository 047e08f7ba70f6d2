"""Data files and experiment text that tests of several folders write: a spec around a
data section, IDX and MNIST files of tiny generated images."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from nncli.config import yamlio
from nncli.config.spec import validate

SPEC = """\
seed: 3
data:
{data}
model:
  layers:
    - dense: 4
    - relu
    - dense: {out}
loss: {loss}
train: {{epochs: 1, batch_size: 8, device: cpu}}
"""


def spec_text(data: str, loss: str = "cross_entropy", out: int = 3) -> str:
    body = "\n".join(f"  {line}" for line in data.strip().splitlines())
    return SPEC.format(data=body, loss=loss, out=out)


def params(text: str) -> Any:
    """The data section of a spec written as YAML lines under `data:`."""
    return validate(yamlio.loads(spec_text(text), "t.yaml")).data


def write_idx(path: Path, array: np.ndarray, zipped: bool = False) -> Path:
    """An IDX file (unsigned bytes) of `array`, as MNIST ships them."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if zipped else payload)
    return path


def tiny_images(n: int = 40, side: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` images of a bright square on the left (label 0) or the right (label 1)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 40, size=(n, side, side))
    half = side // 2
    for i, label in enumerate(labels):
        images[i, 4:-4, (half if label else 0) : (side if label else half)] += 200
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_mnist(folder: Path, zipped: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if zipped else ""
    for prefix, seed, n in (("train", 0, 40), ("t10k", 1, 10)):
        images, labels = tiny_images(n, seed=seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, zipped)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, zipped)
    return folder
