"""nncli against hand-written PyTorch loops, side by side in one run (issue 8).

    .venv/bin/python bench/run.py            # full: 5 repeats, W2 on 60,000 samples (minutes)
    .venv/bin/python bench/run.py --quick    # 3 repeats, W2 on 12,000 samples, fewer CLI runs
    make bench                               # the full run

For each workload (bench/workloads.py) it times, interleaved repeat by repeat so that a
busy machine slows all loops alike: (a) the tutorial loop, (b) a tight hand-written loop,
(b*) the tight loop with the engine's settings (its thread count and optimizer
implementation, gradients cleared by hand: the cheapest loop we can write), and (c) nncli's
engine. Then the command line: `nncli --help`, `nncli validate`, and `nncli train` of the
circles example end to end (split into start-up, training, plots, writing) against the
tutorial script's whole process (bench/tutorial_circles.py). The table goes to the console;
everything, with every repeat, to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers as plain modules

import loops
import processes
import torch
import workloads
from report import markdown, table

from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine import prepare as engine_mod

RESULTS = Path(__file__).resolve().parent / "results"
LOOPS = ("tutorial", "tight", "tight*", "engine")
WARMUP_BATCHES = 3


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def engine_settings(p: engine_mod.Prepared) -> dict[str, Any]:
    """What the engine chose for this experiment: intra-op threads and optimizer flags."""
    chooser = getattr(engine_mod, "threads_for", None)
    n = chooser(p) if chooser else None
    defaults = p.optimizer.defaults
    return {
        "threads": n or torch.get_num_threads(),
        "fused": bool(defaults.get("fused")),
        "foreach": bool(defaults.get("foreach")),
    }


def timed(fn: Callable[[], dict[str, float]]) -> tuple[float, dict[str, float]]:
    gc.collect()
    started = time.perf_counter()
    metrics = fn()
    return time.perf_counter() - started, metrics


def bench_workload(w: workloads.Workload, repeats: int, dev: torch.device) -> dict[str, Any]:
    spec = validate(yamlio.loads(w.spec_text, f"{w.key}.yaml"))
    p0 = engine_mod.prepare(spec)
    train, test = p0.splits["train"], p0.splits.get("test")
    hand = workloads.hand_model(w, dev)
    if workloads.parameter_count(hand) != p0.n_params:
        raise SystemExit(f"{w.key}: the hand-written model differs from the experiment's")
    settings = engine_settings(p0)
    n_train, n_batches = len(train[0]), p0.n_batches
    del p0

    def adam(model: torch.nn.Module, engine_like: bool) -> torch.optim.Optimizer:
        extra = {k: True for k in ("fused", "foreach") if engine_like and settings[k]}
        return torch.optim.Adam(model.parameters(), lr=w.lr, **extra)

    def run(loop: str, max_batches: int | None = None) -> tuple[float, dict[str, float]]:
        """One training from fresh weights, timed from the first batch to the last metric."""
        if loop == "engine":
            p = engine_mod.prepare(spec)
            return timed(lambda: loops.engine(p, max_batches))
        model = workloads.hand_model(w, dev)
        opt = adam(model, loop == "tight*")
        loss = w.loss()
        args = (model, opt, loss, train, test, w.epochs, w.batch, w.binary)
        if loop == "tutorial":
            return timed(lambda: loops.tutorial(*args, max_batches=max_batches))
        if loop == "tight":
            return timed(lambda: loops.tight(*args, w.seed, max_batches=max_batches))
        with threads(settings["threads"]):
            return timed(lambda: loops.tight(*args, w.seed, bare=True, max_batches=max_batches))

    for loop in LOOPS:  # first-call costs (kernel set-up, lazy imports) out of the timings
        run(loop, WARMUP_BATCHES)
    times: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    final: dict[str, dict[str, float]] = {}
    for r in range(repeats):
        order = LOOPS[r % len(LOOPS) :] + LOOPS[: r % len(LOOPS)]  # rotate: no loop always first
        for loop in order:
            seconds, final[loop] = run(loop)
            times[loop].append(seconds)
    samples = n_train * w.epochs
    out: dict[str, Any] = {
        "title": w.title,
        "samples": samples,
        "batches": n_batches * w.epochs,
        "engine_settings": settings,
        "loops": {},
    }
    for loop in LOOPS:
        median = statistics.median(times[loop])
        out["loops"][loop] = {
            "times_s": times[loop],
            "median_s": median,
            "min_s": min(times[loop]),
            "samples_per_s": samples / median,
            "final": final[loop],
        }
    # ratios of medians (the measure); of minima too, which a busy machine disturbs
    # least (a repeat can only be slowed by other processes, never sped up)
    for stat, suffix in (("median_s", ""), ("min_s", " (min)")):
        t = {loop: out["loops"][loop][stat] for loop in LOOPS}
        out["c/a" + suffix] = t["tutorial"] / t["engine"]
        out["c/b" + suffix] = t["tight"] / t["engine"]
        out["c/b*" + suffix] = t["tight*"] / t["engine"]
        out["overhead_us_per_batch" + suffix] = (t["engine"] - t["tight*"]) / out["batches"] * 1e6
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats, W2 on 12,000 samples")
    parser.add_argument("--repeats", type=int, help="repeats per loop (default 5, quick 3)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--only", default="W1,W2,W3,W4,W5,cli", help="comma list of W1..W5,cli")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads for every loop (default: torch's); the CLI runs keep theirs",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    only = {s.strip() for s in args.only.split(",")}
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "threads_option": args.threads,
        "repeats": repeats,
        "device": str(dev),
        "machine": machine(),
        "load_before": list(os.getloadavg()),
        "workloads": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nncli-bench-") as tmp:
        folder = Path(tmp)
        makers: dict[str, Callable[[], workloads.Workload]] = {
            "W1": lambda: workloads.circles(args.device),
            "W2": lambda: workloads.mlp(
                folder,
                args.device,
                12_000 if args.quick else 60_000,
                2_000 if args.quick else 10_000,
            ),
            "W3": lambda: workloads.cnn(folder, args.device, 10_000),
            "W4": lambda: workloads.resnet(folder, args.device, 3_000 if args.quick else 10_000),
            "W5": lambda: workloads.lstm(args.device, 16_000 if args.quick else 64_000),
        }
        for key, make in makers.items():
            if key in only:
                print(f"{key} ...", file=sys.stderr, flush=True)
                result["workloads"][key] = bench_workload(make(), repeats, dev)
        if "cli" in only:
            print("cli ...", file=sys.stderr, flush=True)
            result["cli"] = processes.bench_cli(folder, repeats)
    result["load_after"] = list(os.getloadavg())
    result["wall_s"] = time.perf_counter() - started

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(table(result))
    print(f"\nwritten: {args.out} (and {args.out.with_suffix('.md').name}, the README table)")


if __name__ == "__main__":
    main()
