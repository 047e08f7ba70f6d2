"""A table larger than one wants in memory (issue 16): a generated Parquet file (and its
CSV) of 16 float columns, a text column and a 0/1 target, prepared by nncli's data pipeline
in memory and streamed (the encoded cache built, then reused), each in a process of its
own; printed: seconds and the process's peak resident memory.

    .venv/bin/python bench/bench_table.py                  # 4,000,000 rows (294 MB Parquet)
    .venv/bin/python bench/bench_table.py --rows 1000000 --csv

The cache goes to a temporary NNCLI_CACHE, deleted with the files at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

EXPERIMENT = """\
name: table
seed: 0
data: {{source: {source}, path: {path}, target: y, stream: {stream}}}
model: {{layers: [dense: 2]}}
loss: cross_entropy
train: {{epochs: 1, batch_size: 256, device: cpu}}
"""

ONE = """\
import resource, sys, time
from pathlib import Path
from nncli.config.spec import load_experiment
from nncli.data.pipeline import prepare
spec = load_experiment(Path(sys.argv[1])).spec
t = time.perf_counter()
dataset, _ = prepare(spec.data, spec.seed, "index")
took = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{took:.2f} s, peak RSS {peak:,.0f} MB ({type(dataset.x).__name__})")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--csv", action="store_true", help="the CSV of the table too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(
            rng.normal(size=(args.rows, 16)).astype(np.float32),
            columns=[f"x{i}" for i in range(16)],
        )
        frame["color"] = rng.choice(["red", "green", "blue", "grey"], args.rows)
        frame["y"] = (frame.x0 + frame.x1 > 0).astype(int)
        sources = {"parquet": folder / "t.parquet"}
        frame.to_parquet(sources["parquet"], index=False)
        if args.csv:
            sources["csv"] = folder / "t.csv"
            frame.to_csv(sources["csv"], index=False)
        del frame
        env = {**os.environ, "NNCLI_CACHE": str(folder / "cache")}
        for source, path in sources.items():
            size = path.stat().st_size / 1e6
            for stream, what in (("false", "in memory"), ("true", "built"), ("true", "reused")):
                spec = folder / f"{source}-{stream}.yaml"
                spec.write_text(EXPERIMENT.format(source=source, path=path, stream=stream))
                done = subprocess.run(
                    [sys.executable, "-c", ONE, str(spec)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                )
                said = done.stdout.strip()
                print(f"{source} ({args.rows:,} rows, {size:,.0f} MB) {what:9}: {said}")


if __name__ == "__main__":
    main()
