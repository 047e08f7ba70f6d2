"""Where and how a run computes: the device it asks for, the CPU threads a small model
trains on, and the seeds of every random generator."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from nncli.errors import NncliError

if TYPE_CHECKING:
    from nncli.engine.prepare import Prepared

# A batch with fewer multiply-adds than this trains on one CPU thread: a second one cannot
# pay for its fork and join on ops this small (about 50 us of work), and on a busy machine
# each join waits for a descheduled thread (bench/: circles ran 10x slower with 2 threads).
ONE_THREAD_MACS = 1 << 20


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a named device must be present."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NncliError(
                f"train.device is '{name}' but this machine has no CUDA device (or this torch "
                "build has no CUDA support); use device: auto or cpu"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise NncliError(
                f"train.device is '{name}' but only {torch.cuda.device_count()} CUDA device(s) "
                f"exist (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise NncliError(
            "train.device is 'mps' but MPS (Apple GPU) is not available here; use auto or cpu"
        )
    return torch.device(name)


def batch_macs(model: nn.Sequential, shapes: list[tuple[int, ...]], batch: int) -> int:
    """Multiply-adds of one batch's forward pass, roughly: each parameter of a layer is used
    once per position of its output (once for dense layers, once per pixel for convolutions)."""
    total = 0
    for layer, shape in zip(model, shapes, strict=True):
        positions = math.prod(shape[1:]) if len(shape) > 1 else 1
        total += sum(q.numel() for q in layer.parameters()) * positions
    return total * batch


def threads_for(p: Prepared) -> int | None:
    """The intra-op thread count to train `p` with: 1 for a small model on a CPU (see
    ONE_THREAD_MACS); None (torch's own setting) otherwise, or where OMP_NUM_THREADS says."""
    if p.device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return None
    small = batch_macs(p.model, p.shapes, p.spec.train.batch_size) < ONE_THREAD_MACS
    return 1 if small and torch.get_num_threads() > 1 else None


@contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """torch.set_num_threads(n) for the block (nothing when n is None), then back."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
