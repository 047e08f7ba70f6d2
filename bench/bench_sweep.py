"""A sweep's start-up: the 16-trial circles grid (4 learning rates x 4 widths, --jobs 2)
with each trial forked warm from one process that imported torch once (`--start warm`, the
default) against a fresh `nncli train` process per trial (`--start process`), interleaved
repeat by repeat in one run so that a busy machine slows both alike.

    .venv/bin/python bench/bench_sweep.py [--repeats 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CIRCLES = ROOT / "experiments" / "circles.yaml"
GRID = ["--grid", "optimizer.lr=0.01,0.03,0.1,0.3", "--grid", "model.layers.0.dense=4,8,16,32"]


def sweep(start: str, jobs: int) -> tuple[float, float]:
    """Wall seconds of the whole sweep, and the sum of its trials' training seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep"
        command = [sys.executable, "-m", "nncli", "sweep", str(CIRCLES), *GRID]
        command += ["--jobs", str(jobs), "--start", start, "--out", str(out)]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        wall = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(f"--start {start} failed:\n{done.stderr}")
        trials = json.loads((out / "sweep.json").read_text(encoding="utf-8"))["trials"]
        training = 0.0
        for trial in trials:
            with (out / trial["run"] / "metrics.csv").open(encoding="utf-8") as f:
                training += sum(float(row["time_s"]) for row in csv.DictReader(f))
    return wall, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"process": [], "warm": []}
    training: list[float] = []
    for _ in range(args.repeats):
        for start, times in walls.items():
            wall, trained = sweep(start, args.jobs)
            times.append(wall)
            training.append(trained)
            print(f"--start {start:8} {wall:6.1f} s (trials' training {trained:.1f} s)")
    process, warm = (statistics.median(walls[s]) for s in ("process", "warm"))
    # each repeat's pair ran back to back: their ratio is steadier where the machine's
    # speed drifts between repeats
    paired = statistics.median(p / w for p, w in zip(walls["process"], walls["warm"], strict=True))
    print(
        f"16-trial circles grid, --jobs {args.jobs}, median of {args.repeats}: "
        f"process {process:.1f} s, warm {warm:.1f} s: warm is {process / warm:.2f}x faster "
        f"({paired:.2f}x, the median of each repeat's ratio; the trials' training adds up "
        f"to {statistics.median(training):.1f} s)"
    )


if __name__ == "__main__":
    main()
