"""Inputs streamed from disk (`data.stream`): a split's rows of a memory-mapped .npy file
or its image files (decoded as read), read batch by batch through a torch DataLoader
(workers, pinned memory, non-blocking copies to the device), in an epoch order of chunks
of adjacent rows (`data.shuffle: chunks`) so that reads are long and sequential. In
`Prepared.splits` a `DiskRows` stands where in-memory data has a tensor; fit and evaluate
ask it for batches, everything else for its length and shape."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nncli.data.npy import DiskSource, check_finite, source_of
from nncli.data.preprocess import Preprocessing
from nncli.data.tablestream import NOTES
from nncli.engine.signals import deferred_signals
from nncli.errors import NncliError
from nncli.inputs import size_text
from nncli.workers import context as workers_context
from nncli.workers import leave_signals

FIGURE_ROWS = 10_000  # figures that draw a split's points draw at most this many of them
CHUNK_BYTES = 256 * 2**10  # shuffle: chunks: adjacent rows of about this many bytes each
WINDOW = 4  # ... whose rows are shuffled among this many chunks in a row of the epoch
READ_BYTES = 16 * 2**20  # an evaluation chunk reads at most about this many bytes (each
# worker holds a few: within a memory cgroup of 784 MB, 64 MB chunks of two workers ran out)


@dataclass(frozen=True)
class DiskRows:
    """The rows `rows` (row numbers of `source`, in the split's order) of the inputs on
    disk, prepared by `pre` as they are read; `device` is where batches go."""

    source: DiskSource
    rows: np.ndarray
    pre: Preprocessing
    device: torch.device
    workers: int = 0
    shuffle: str = "chunks"  # data.shuffle: "chunks" or "rows"

    @classmethod
    def of(
        cls,
        x: Any,
        rows: np.ndarray,
        pre: Preprocessing,
        device: torch.device,
        workers: int,
        shuffle: str = "chunks",
    ) -> DiskRows:
        """The rows `rows` of `x`, a memory-mapped file as `data.npy` opened it or another
        `DiskSource` (image files)."""
        return cls(source_of(x), rows, pre, device, workers, shuffle)

    def head(self, n: int) -> torch.Tensor:
        """The model inputs of the first `n` rows, on the device."""
        return self.read(np.arange(min(n, len(self.rows)))).to(self.device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.pre.shape))

    def dim(self) -> int:
        return len(self.shape)

    def __getitem__(self, part: slice) -> DiskRows:
        """Some of the rows (e.g. a rank's share `[rank::world]`), still on disk."""
        return replace(self, rows=self.rows[part])

    def read(self, positions: np.ndarray) -> torch.Tensor:
        """The model inputs of these positions of the split, on the host."""
        rows = self.rows[positions]
        return self.prepared(self.source.read(rows), rows)

    def prepared(self, values: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        """The source's `values` of the rows `rows` as model inputs."""
        x = self.pre.transform(values, overwrite=True)
        check_finite(x, rows, self.source)
        return torch.from_numpy(x)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * self.source.row_bytes

    def batches(self, positions: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(positions, inputs) of each batch of positions in turn, on the device: read by
        the DataLoader's workers ahead of use, pinned and copied without blocking on cuda."""
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            _Reader(self),
            batch_size=None,  # the sampler yields whole batches
            sampler=_Batches(positions),
            collate_fn=_as_read,
            num_workers=self.workers,
            multiprocessing_context=workers_context() if self.workers else None,
            worker_init_fn=leave_signals,
            pin_memory=cuda,
            # its own generator: making an iterator draws a seed, which from torch's global
            # generator would change the dropout masks (and make runs differ from in-memory)
            generator=torch.Generator().manual_seed(0),
        )
        with deferred_signals():  # the workers fork here: a Ctrl-C that lands in an at-fork
            # hook (logging's, multiprocessing's) would be raised there, printed and lost
            read = iter(loader) if self.workers else ahead(iter(loader))
        for idx, got, problem in read:
            if problem:  # e.g. an image file that cannot be decoded any more
                raise NncliError(problem)
            # bytes as read (`_Reader`) are prepared here
            xb = self.prepared(got, self.rows[idx]) if isinstance(got, np.ndarray) else got
            yield (
                torch.from_numpy(idx).to(self.device, non_blocking=cuda),
                xb.to(self.device, non_blocking=cuda),
            )

    def permutation(self, order: torch.Generator) -> torch.Tensor:
        """The epoch's order of the split's positions, drawn from `order` (fit's generator,
        checkpointed, so a resumed run draws the same): `rows`, a permutation of every row as
        in memory; `chunks`, the rows in file order cut into chunks of about CHUNK_BYTES,
        the chunks in a random order, and the rows shuffled within each WINDOW chunks."""
        n = len(self.rows)
        if self.shuffle == "rows":
            return torch.randperm(n, generator=order)
        by_file = np.argsort(self.rows, kind="stable")
        return torch.from_numpy(by_file[chunk_order(n, self.chunk_rows, order)])

    @property
    def chunk_rows(self) -> int:
        """Rows in a chunk of `shuffle: chunks`."""
        return max(1, CHUNK_BYTES // self.source.row_bytes)

    def epoch(
        self, perm: torch.Tensor | None, batch: int, n_batches: int, rank: int, world: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of each of the epoch's `n_batches` batches, from the seeded
        permutation `perm` (the split's order where None), as fit's in-memory path takes
        them: the same rows, in the same order."""
        n = len(self.rows)
        order = np.arange(n) if perm is None else perm.cpu().numpy()
        positions = [
            order[i * batch + rank : min((i + 1) * batch, n) : world] for i in range(n_batches)
        ]
        return self.batches(positions)

    def chunks(self, chunk: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split in file order (the train split's own order is random: read in it, each
        row would be a read of its own), in chunks of at most `chunk` rows (and about
        READ_BYTES)."""
        step = max(1, min(chunk, READ_BYTES // self.source.row_bytes))
        by_file = np.argsort(self.rows, kind="stable")
        return self.batches([by_file[lo : lo + step] for lo in range(0, len(by_file), step)])

    def sample(self, most: int = FIGURE_ROWS) -> tuple[np.ndarray, torch.Tensor]:
        """At most `most` of the split's positions, evenly spread, and their inputs."""
        positions = np.unique(np.linspace(0, len(self.rows) - 1, min(most, len(self.rows))))
        positions = positions.astype(np.int64)
        return positions, self.read(positions).to(self.device)

    def describe(self) -> str:
        return f"{len(self.rows):,} rows, {size_text(self.nbytes)}; workers {self.workers}"


def ahead(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """`items` produced on a thread of their own, up to `depth` ahead of use: with workers
    0, the next batch is read (pread and numpy's copies let go of the GIL) while the model
    trains on this one."""
    out: queue.Queue[tuple[Any, BaseException | None, bool]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None, bool]) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None, False)):
                    return
        except BaseException as exc:  # raised where the item was wanted
            put((None, exc, True))
            return
        put((None, None, True))

    thread = threading.Thread(target=produce, name="nncli-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, exc, done = out.get()
            if exc is not None:
                raise exc
            if done:
                return
            yield item
    finally:
        stop.set()  # a consumer that stops early (an error in its step) frees the thread
        thread.join()


def chunk_order(n: int, size: int, order: torch.Generator) -> np.ndarray:
    """0..n-1 cut into chunks of `size`, the chunks permuted, then the numbers shuffled
    within each run of WINDOW chunks: one draw of the chunks' order and one of n keys."""
    chunks = torch.randperm(-(-n // size), generator=order).numpy()
    flat = (chunks[:, None] * size + np.arange(size)).ravel()
    flat = flat[flat < n]  # the last chunk may be short, wherever it lands
    keys = torch.rand(n, generator=order, dtype=torch.float64).numpy()
    keys += np.arange(n) // (size * WINDOW)  # the window's number, then a random place in it
    return flat[np.argsort(keys, kind="stable")]


class _Batches(Sampler[np.ndarray]):
    """The batches of positions fit decided, one per step."""

    def __init__(self, positions: list[np.ndarray]) -> None:
        self.positions = positions

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.positions)

    def __len__(self) -> int:
        return len(self.positions)


class _Reader(Dataset[tuple[np.ndarray, Any, str]]):
    """One batch of positions -> (positions, model inputs, ""), read in the worker process
    (each reads the file itself); an NncliError comes back as its text in the third place
    (raised in a worker, the DataLoader would re-raise it with the worker's traceback).

    A worker's tensor reaches the main process through shared memory, which costs both
    sides about a millisecond a tensor whatever its size; a NumPy array is pickled through
    the worker's pipe instead. So the positions come back as an array, and so do values
    read as bytes (an image's pixels, a uint8 .npy's rows: a quarter of their float32
    size): the main process prepares those (`DiskRows.prepared`). With 2 workers on 2 cores
    that took a fifth of the workers' time off an epoch of 10,000 small PNGs. Not on cuda,
    whose batches the DataLoader pins (tensors only), nor without workers (read on a
    thread: no crossing)."""

    def __init__(self, rows: DiskRows) -> None:
        self.rows = rows
        self.raw = rows.workers > 0 and rows.device.type != "cuda"

    def __getitem__(self, positions: Any) -> tuple[np.ndarray, Any, str]:
        idx = np.asarray(positions, dtype=np.int64)
        try:
            rows = self.rows.rows[idx]
            values = self.rows.source.read(rows)
            if self.raw and values.dtype == np.uint8:
                return idx, values, ""
            return idx, self.rows.prepared(values, rows), ""
        except NncliError as exc:
            return idx, torch.empty(0), str(exc)

    def __len__(self) -> int:
        return len(self.rows)


def _as_read(batch: Any) -> Any:
    """The DataLoader's collate_fn: a batch as `_Reader` made it (its default would turn
    the NumPy arrays into tensors in the worker)."""
    return batch


def data_line(splits: dict[str, tuple[Any, torch.Tensor]]) -> str:
    """The console's line on where a run's data is: in memory, or streamed from disk."""
    x = splits["train"][0]
    if not isinstance(x, DiskRows):
        return "data: in memory"
    rows = sum(len(s) for s, _ in splits.values())
    total = sum(s.nbytes for s, _ in splits.values())
    line = f"data: streamed from disk ({rows:,} rows, {size_text(total)}; workers {x.workers})"
    note = NOTES.get(getattr(x.source, "file", ""))  # a table encoded into a cache file
    return f"{line}; {note}" if note else line


def figure_splits(
    splits: dict[str, tuple[Any, torch.Tensor]],
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The splits as tensors for the figures that draw their points: streamed ones as a
    bounded sample of their rows (FIGURE_ROWS), in-memory ones whole."""
    out = {}
    for name, (x, y) in splits.items():
        if isinstance(x, DiskRows):
            positions, xs = x.sample()
            out[name] = (xs, y[torch.as_tensor(positions, device=y.device)])
        else:
            out[name] = (x, y)
    return out
