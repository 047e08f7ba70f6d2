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

from nncli.engine.batches import DiskRows
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
    """The intra-op thread count to train `p` with on a CPU: 1 for a small model (see
    ONE_THREAD_MACS); for streamed data, a thread fewer than torch's own for each reader
    (its DataLoader workers, or the read-ahead thread), at least 1; else None (torch's own
    setting), as also where OMP_NUM_THREADS says. A reader takes about 1 ms of CPU for a
    1.6 MB batch; competing with torch's threads for the cores, it stalls each of their
    joins (bench/bench_stream.py on 2 cores: 164,000 samples/s with 2 threads, 182,000
    with 1)."""
    threads = torch.get_num_threads()
    if p.device.type != "cpu" or "OMP_NUM_THREADS" in os.environ or threads == 1:
        return None
    if batch_macs(p.model, p.shapes, p.spec.train.batch_size) < ONE_THREAD_MACS:
        return 1
    x = p.splits["train"][0]
    if isinstance(x, DiskRows):
        return max(1, threads - max(1, x.workers))
    return None


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
