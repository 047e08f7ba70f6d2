"""Time `nncli compare` over many fake but realistic run folders (library call and CLI).

    .venv/bin/python bench/bench_compare.py [--runs 500] [--epochs 20]

Budget: 500 runs answer in under 2 seconds from the command line on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nncli.runs.files import CONFIG, METRICS, RUN_JSON
from nncli.runs.folder import columns, compare

CONFIG_TEMPLATE = """\
name: circles
seed: {seed}
data:
  source: circles
  split: {{val: 0.0, test: 0.3, stratify: true}}
  n_samples: 1000
  noise: 0.03
  factor: 0.5
model:
  layers:
  - {{type: dense, units: {units}, bias: true}}
  - {{type: gelu, approximate: none}}
  - {{type: dense, units: 1, bias: true}}
  - {{type: sigmoid}}
loss: {{name: bce}}
optimizer:
  name: adam
  lr: {lr}
  weight_decay: 0.0
  betas: [0.9, 0.999]
  eps: 1.0e-08
  amsgrad: false
train: {{epochs: {epochs}, batch_size: 32, shuffle: true, device: auto}}
metrics: [accuracy]
"""


def make_runs(root: Path, n: int, epochs: int) -> Path:
    """`n` run folders under `root/runs`, as a lr x width sweep would leave them."""
    rng = random.Random(0)
    runs = root / "runs"
    runs.mkdir(parents=True)
    header = columns(["train", "test"], ["accuracy"])
    for i in range(n):
        lr = rng.choice([0.001, 0.003, 0.01, 0.03, 0.1])
        units = rng.choice([4, 8, 16, 32])
        folder = runs / f"2026-11-25T10-{i // 60:02d}-{i % 60:02d}_circles_{i:04x}"
        folder.mkdir()
        (folder / CONFIG).write_text(
            CONFIG_TEMPLATE.format(seed=i % 7, units=units, lr=lr, epochs=epochs), encoding="utf-8"
        )
        lines = [",".join(header)]
        best: dict[str, dict[str, float]] = {}
        row: dict[str, float] = {}
        for epoch in range(1, epochs + 1):
            loss = 0.7 * math.exp(-lr * 30 * epoch) + rng.random() * 0.02
            acc = min(1.0, 0.5 + 0.5 * (1 - loss / 0.7) + rng.random() * 0.01)
            row = {
                "epoch": epoch,
                "train_loss": loss * 1.1,
                "train_accuracy": acc,
                "test_loss": loss,
                "test_accuracy": acc - 0.01,
                "lr": lr,
                "time_s": 0.01,
            }
            lines.append(",".join(repr(row[c]) for c in header))
            for col in header[1:-2]:
                old = best.get(col)
                lower = col.endswith("loss")
                if old is None or (row[col] < old["value"] if lower else row[col] > old["value"]):
                    best[col] = {"value": row[col], "epoch": epoch}
        (folder / METRICS).write_text("\n".join(lines) + "\n", encoding="utf-8")
        info = {
            "name": "circles",
            "status": "completed" if i % 50 else "failed",
            "started_at": f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}+00:00",
            "epochs": epochs,
            "epochs_done": epochs,
            "device": "cpu",
            "seed": i % 7,
            "n_params": 4 * units + 1,
            "task": "binary",
            "monitor": "test_loss",
            "best": best,
            "final": row,
            "ended_at": "2026-11-25T11:00:00+00:00",
            "duration_s": 1.5,
        }
        (folder / RUN_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = make_runs(root, args.runs, args.epochs)
        paths = sorted(runs.iterdir())

        started = time.perf_counter()
        result = compare.compare(paths, sort="test_accuracy")
        read_s = time.perf_counter() - started
        compare.write_outputs(result, compare.out_dir(root / "lib", paths[0]))
        library_s = time.perf_counter() - started

        nncli = Path(sys.executable).with_name("nncli")
        timings = {}
        for fmt in ("table", "csv"):
            started = time.perf_counter()
            subprocess.run(
                [str(nncli), "compare", *map(str, paths), "--format", fmt, "--sort", "accuracy"],
                check=True,
                capture_output=True,
                cwd=root,
            )
            timings[fmt] = time.perf_counter() - started

    print(f"{args.runs} runs x {args.epochs} epochs")
    print(
        f"library: read and compare {read_s:.3f} s, with summary.csv and figures {library_s:.3f} s"
    )
    for fmt, seconds in timings.items():
        print(f"cli `nncli compare runs/* --format {fmt}`: {seconds:.3f} s (budget 2 s)")


if __name__ == "__main__":
    main()
