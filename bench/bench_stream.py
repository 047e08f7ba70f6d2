"""Data larger than memory (issue 16), side by side in one run: one epoch of a generated
float32 .npy of >= 1.5 GB streamed from disk inside a memory cgroup of half the file's size,
against one epoch of the in-memory path on a slice of it that fits.

    sudo .venv/bin/python bench/bench_stream.py            # 1.57 GB (500,000 x 784)
    .venv/bin/python bench/bench_stream.py --rows 100000   # smaller, to try it

The in-memory run goes before and after the streamed one (their mean is compared). The
streamed run is `data.stream: auto`: inside the cgroup nncli sees the limit and chooses
to stream. Both runs are `nncli train` processes; samples/s is the train rows over the
epoch's `time_s` (metrics.csv; no held-out split, so the epoch is training alone). The file's
pages are dropped from the page cache before the streamed run (posix_fadvise), so it reads
from disk. On a machine others share, `OMP_NUM_THREADS=1` keeps torch's threads from
spinning against their jobs (both runs read it). The cgroup needs root: v2 (memory.max) or v1 (memory.limit_in_bytes); without
one the streamed run is unlimited and the bench says so. The files are deleted at the end.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EXPERIMENT = """\
name: {name}
seed: 0
data:
  source: npy
  x: {x}
  y: {y}
  scale: 0.25
  stream: {stream}
  workers: {workers}
  shuffle: {shuffle}
  split: {{test: 0.0}}
model:
  layers: [dense: 128, relu, dense: 10]
loss: cross_entropy
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: 1, batch_size: {batch}, device: cpu}}
metrics: [accuracy]
"""


def generate(folder: Path, rows: int, features: int) -> tuple[Path, Path]:
    """x.npy (rows x features float32), written in chunks; y.npy: 10 classes from a fixed
    random linear map (learnable). Its pages are then dropped from the page cache."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(features, 10)).astype(np.float32)
    x_path, y_path = folder / "x.npy", folder / "y.npy"
    x = np.lib.format.open_memmap(x_path, "w+", np.float32, (rows, features))
    y = np.empty(rows, dtype=np.int64)
    step = 20_000
    for lo in range(0, rows, step):
        part = rng.normal(size=(min(step, rows - lo), features)).astype(np.float32)
        x[lo : lo + len(part)] = part
        y[lo : lo + len(part)] = (part @ weights).argmax(axis=1)
    x.flush()
    del x
    np.save(y_path, y)
    drop_cache(x_path)
    return x_path, y_path


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def slice_of(x_path: Path, y_path: Path, rows: int, folder: Path) -> tuple[Path, Path]:
    x = np.load(x_path, mmap_mode="r")
    np.save(folder / "x_slice.npy", np.asarray(x[:rows]))
    np.save(folder / "y_slice.npy", np.load(y_path)[:rows])
    return folder / "x_slice.npy", folder / "y_slice.npy"


class Cgroup:
    """A memory cgroup of `limit` bytes for the streamed run: v2 where /sys/fs/cgroup is
    one, else v1's memory controller; `None` where this machine does not let us make one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.folder: Path | None = None
        self.version = 0
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        try:
            if v2.is_file() and "memory" in v2.read_text():
                self.folder, self.version = Path(f"/sys/fs/cgroup/nncli-bench-{os.getpid()}"), 2
                self.folder.mkdir()
                (self.folder / "memory.max").write_text(str(limit))
                (self.folder / "memory.swap.max").write_text("0")
            elif Path("/sys/fs/cgroup/memory").is_dir():
                own = next(
                    line.split(":", 2)[2]
                    for line in Path("/proc/self/cgroup").read_text().splitlines()
                    if "memory" in line.split(":")[1].split(",")
                )
                base = Path("/sys/fs/cgroup/memory") / own.lstrip("/")
                self.folder, self.version = base / f"nncli-bench-{os.getpid()}", 1
                self.folder.mkdir()
                (self.folder / "memory.limit_in_bytes").write_text(str(limit))
                memsw = self.folder / "memory.memsw.limit_in_bytes"
                if memsw.is_file():  # no swapping past the limit either
                    memsw.write_text(str(limit))
        except (OSError, StopIteration) as exc:
            print(f"no memory cgroup here ({exc}); the streamed run is not limited")
            self.remove()
            self.folder = None

    def command(self, args: list[str]) -> list[str]:
        """`args` run inside the cgroup: the shell joins it, then becomes the command."""
        if self.folder is None:
            return args
        procs = self.folder / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *args]

    def peak(self) -> int | None:
        if self.folder is None:
            return None
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        path = self.folder / name
        return int(path.read_text()) if path.is_file() else None

    def remove(self) -> None:
        if self.folder is not None and self.folder.is_dir():
            for _ in range(50):  # the last process may take a moment to leave
                try:
                    self.folder.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


def train(spec: Path, runs: Path, wrap: Cgroup | None = None) -> tuple[float, int, str]:
    """One `nncli train`: (samples/s of its epoch, train rows, its data line)."""
    args = [sys.executable, "-m", "nncli", "train", str(spec), "--runs-dir", str(runs)]
    if wrap is not None:
        args = wrap.command(args)
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"{spec} failed (exit code {done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    folder = Path(done.stdout.strip().splitlines()[-1])
    with (folder / "metrics.csv").open() as f:
        (row,) = csv.DictReader(f)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("data: "))
    header = next(ln for ln in done.stdout.splitlines() if "(train " in ln)
    n = int(header.split("(train ")[1].split(")")[0].split(",")[0])
    return n / float(row["time_s"]), n, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="rows of the generated file")
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--slice", type=int, default=100_000, help="rows of the in-memory run")
    parser.add_argument("--workers", type=int, default=0, help="the streamed run's workers")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument(
        "--shuffle", default="chunks", choices=["chunks", "rows"], help="the streamed order"
    )
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    a = parser.parse_args()

    size = a.rows * a.features * 4
    free = shutil.disk_usage(a.dir).free
    if free < size * 1.4:
        raise SystemExit(
            f"{a.dir} has {free / 1e9:.1f} GB free; the bench needs {size * 1.4 / 1e9:.1f}"
        )
    folder = Path(tempfile.mkdtemp(prefix="nncli-bench-stream-", dir=a.dir))
    group = Cgroup(size // 2)
    try:
        print(f"generating {a.rows:,} x {a.features} float32 ({size / 1e9:.2f} GB) in {folder}")
        x_path, y_path = generate(folder, a.rows, a.features)
        xs, ys = slice_of(x_path, y_path, a.slice, folder)
        os.sync()  # no write-back of the new files beside the runs
        specs = {}
        for name, (x, y, stream, workers) in {
            "memory": (xs, ys, "false", 0),
            "stream": (x_path, y_path, "auto", a.workers),
        }.items():
            specs[name] = folder / f"{name}.yaml"
            specs[name].write_text(
                EXPERIMENT.format(
                    name=name,
                    x=x,
                    y=y,
                    stream=stream,
                    workers=workers,
                    batch=a.batch,
                    shuffle=a.shuffle if stream == "auto" else "rows",
                )
            )
        # in memory before and after the streamed run: a machine whose load changes in
        # between slows both sides alike
        before, n_memory, line_memory = train(specs["memory"], folder / "runs")
        drop_cache(x_path)
        streamed, n_streamed, line_streamed = train(specs["stream"], folder / "runs", group)
        after, _, _ = train(specs["memory"], folder / "runs")
        memory = (before + after) / 2
        print(f"in memory: {before:,.0f} then {after:,.0f} samples/s")
        peak = group.peak()
        limit = f"{group.limit / 1e9:.2f} GB (cgroup v{group.version})" if group.folder else "none"
        print(f"in memory : {n_memory:>9,} train rows  {memory:>10,.0f} samples/s  {line_memory}")
        print(
            f"streamed  : {n_streamed:>9,} train rows  {streamed:>10,.0f} samples/s  {line_streamed}"
        )
        print(
            f"memory limit of the streamed run: {limit}; its peak use: "
            + (f"{peak / 1e9:.2f} GB" if peak is not None else "not known")
        )
        print(f"ratio streamed / in memory: {streamed / memory:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        group.remove()


if __name__ == "__main__":
    main()
