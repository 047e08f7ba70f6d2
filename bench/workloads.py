"""The benchmark's workloads: an experiment file for nncli, the same network written by
hand for the hand-written loops, and the data (W2, W3 and W4 are synthetic, made here; W5
is nncli's generated marker_order, which the hand loops take from the prepared splits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Workload:
    key: str  # W1 .. W5
    title: str
    spec_text: str  # the experiment file nncli trains
    model: Callable[[], nn.Module]  # the same network, written by hand
    loss: Callable[[], nn.Module]
    lr: float
    batch: int
    epochs: int
    binary: bool  # sigmoid output + bce (else logits + cross-entropy)
    seed: int


def _circles_model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 16), nn.GELU(), nn.Linear(16, 1), nn.Sigmoid())


def mlp_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )


def _cnn_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


MLP_SPEC = """\
name: w2_mlp
seed: 0
data: {{source: npz, path: {train}, test_path: {test}}}
model:
  layers: [dense: 256, relu, dropout: 0.2, dense: 128, relu, dropout: 0.2, dense: 10]
loss: cross_entropy
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: 1, batch_size: 64, device: {device}}}
metrics: [accuracy]
"""

CNN_SPEC = """\
name: w3_cnn
seed: 0
data: {{source: npz, path: {train}, split: {{test: 0.0}}}}
model:
  layers:
    - {{type: conv2d, out_channels: 16, kernel_size: 3, padding: 1}}
    - relu
    - maxpool2d: 2
    - {{type: conv2d, out_channels: 32, kernel_size: 3, padding: 1}}
    - relu
    - maxpool2d: 2
    - flatten
    - dense: 10
loss: cross_entropy
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: 1, batch_size: 64, device: {device}}}
metrics: [accuracy]
"""


RESNET_SPEC = """\
name: w4_resnet
seed: 0
data: {{source: npz, path: {train}, split: {{test: 0.0}}}}
model:
  blocks:
    basic:
      - residual: [conv2d: {{out_channels: 16, padding: 1}}, batchnorm2d, relu,
                   conv2d: {{out_channels: 16, padding: 1}}, batchnorm2d]
      - relu
  layers:
    - conv2d: {{out_channels: 16, padding: 1}}
    - batchnorm2d
    - relu
    - basic: {{repeat: 2}}
    - residual: [conv2d: {{out_channels: 32, stride: 2, padding: 1}}, batchnorm2d, relu,
                 conv2d: {{out_channels: 32, padding: 1}}, batchnorm2d]
    - relu
    - global_avg_pool
    - dense: 10
loss: cross_entropy
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: 1, batch_size: 64, device: {device}}}
metrics: [accuracy]
"""


class _Basic(nn.Module):
    """conv-bn-relu-conv-bn plus the input (through a strided 1x1 conv where it changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1),
            nn.BatchNorm2d(cout),
        )
        self.skip = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x) + (x if self.skip is None else self.skip(x))
        return torch.relu(out)


def _resnet_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        _Basic(16, 16, 1),
        _Basic(16, 16, 1),
        _Basic(16, 32, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


LSTM_SPEC = """\
name: w5_lstm
seed: 0
data: {{source: marker_order, n_samples: {n}, length: 20, n_symbols: 8, split: {{test: 0.0}}}}
model:
  layers: [embedding: 16, lstm: 64, dense: 2]
loss: cross_entropy
optimizer: {{name: adam, lr: 0.003}}
train: {{epochs: 1, batch_size: 64, device: {device}}}
metrics: [accuracy]
"""


class _LSTMNet(nn.Module):
    """Token ids -> embedding 16 -> LSTM 64 -> the last step's output -> dense 2: what one
    writes by hand (marker_order has no padding, so nncli's padding-aware layers compute
    the same function)."""

    def __init__(self, vocab: int = 12) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, 16, padding_idx=0)
        self.lstm = nn.LSTM(16, 64, batch_first=True)
        self.head = nn.Linear(64, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(ids.long()))
        logits: torch.Tensor = self.head(out[:, -1])
        return logits


def synthetic(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` samples of 10 classes: a fixed random pattern per class plus noise, in 0..1-ish,
    so a model has something to learn (accuracy climbs within one epoch)."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((10, *shape), dtype=np.float32)
    y = rng.integers(0, 10, n)
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    x *= 0.6
    x += patterns[y]
    return x, y.astype(np.int64)


def _npz(folder: Path, name: str, x: np.ndarray, y: np.ndarray) -> Path:
    path = folder / f"{name}.npz"
    np.savez(path, x=x, y=y)
    return path


def circles(device: str) -> Workload:
    text = (ROOT / "experiments" / "circles.yaml").read_text(encoding="utf-8")
    return Workload(
        "W1",
        "circles 2-16-1 GELU, Adam 3e-2, batch 32, 20 epochs, 700 train / 300 test",
        text.replace("device: auto", f"device: {device}"),
        _circles_model,
        nn.BCELoss,
        lr=0.03,
        batch=32,
        epochs=20,
        binary=True,
        seed=42,
    )


def mlp(folder: Path, device: str, n_train: int, n_test: int) -> Workload:
    x, y = synthetic(n_train + n_test, (784,), seed=1)
    train = _npz(folder, "w2_train", x[:n_train], y[:n_train])
    test = _npz(folder, "w2_test", x[n_train:], y[n_train:])
    return Workload(
        "W2",
        f"MLP 784-256-128-10 dropout 0.2, Adam 1e-3, batch 64, 1 epoch of {n_train:,}"
        f" + test {n_test:,}",
        MLP_SPEC.format(train=train, test=test, device=device),
        mlp_model,
        nn.CrossEntropyLoss,
        lr=1e-3,
        batch=64,
        epochs=1,
        binary=False,
        seed=0,
    )


def cnn(folder: Path, device: str, n_train: int) -> Workload:
    x, y = synthetic(n_train, (1, 28, 28), seed=2)
    train = _npz(folder, "w3_train", x, y)
    return Workload(
        "W3",
        f"CNN conv16-pool-conv32-pool-dense10, Adam 1e-3, batch 64, 1 epoch of {n_train:,}",
        CNN_SPEC.format(train=train, device=device),
        _cnn_model,
        nn.CrossEntropyLoss,
        lr=1e-3,
        batch=64,
        epochs=1,
        binary=False,
        seed=0,
    )


def resnet(folder: Path, device: str, n_train: int) -> Workload:
    x, y = synthetic(n_train, (1, 16, 16), seed=3)
    train = _npz(folder, "w4_train", x, y)
    return Workload(
        "W4",
        f"residual CNN: conv16, 2 basic blocks, 1 strided block to 32 (1x1 projection), "
        f"global avg pool, dense10; Adam 1e-3, batch 64, 1 epoch of {n_train:,} 1x16x16",
        RESNET_SPEC.format(train=train, device=device),
        _resnet_model,
        nn.CrossEntropyLoss,
        lr=1e-3,
        batch=64,
        epochs=1,
        binary=False,
        seed=0,
    )


def lstm(device: str, n_samples: int) -> Workload:
    return Workload(
        "W5",
        f"LSTM: token ids (20 steps, 12 ids) -> embedding 16 -> lstm 64 -> dense 2 on "
        f"marker_order; Adam 3e-3, batch 64, 1 epoch of {n_samples:,}",
        LSTM_SPEC.format(n=n_samples, device=device),
        _LSTMNet,
        nn.CrossEntropyLoss,
        lr=3e-3,
        batch=64,
        epochs=1,
        binary=False,
        seed=0,
    )


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def hand_model(w: Workload, device: torch.device) -> nn.Module:
    torch.manual_seed(w.seed)
    return w.model().to(device)
