"""Where the time goes: one workload's engine `fit` (or the tight loop) under torch.profiler
and cProfile, or `nncli train` of circles under cProfile.

    .venv/bin/python bench/profiling.py W2 [--loop engine|tight] [--threads 1] [--rows 20]
    .venv/bin/python bench/profiling.py train        # the whole CLI process, cumulative
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loops
import torch
import workloads
from torch.profiler import ProfilerActivity, profile

from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine import prepare as engine_mod


def make(key: str, folder: Path) -> workloads.Workload:
    if key == "W1":
        return workloads.circles("cpu")
    if key == "W2":
        return workloads.mlp(folder, "cpu", 12_000, 2_000)
    return workloads.cnn(folder, "cpu", 10_000)


def profile_loop(key: str, loop: str, rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        w = make(key, Path(tmp))
        spec = validate(yamlio.loads(w.spec_text, f"{key}.yaml"))

        def once() -> None:
            if loop == "engine":
                loops.engine(engine_mod.prepare(spec))
                return
            p = engine_mod.prepare(spec)
            model = workloads.hand_model(w, p.device)
            opt = torch.optim.Adam(model.parameters(), lr=w.lr)
            train, test = p.splits["train"], p.splits.get("test")
            loops.tight(
                model, opt, w.loss(), train, test, w.epochs, w.batch, w.binary, w.seed, bare=True
            )

        once()  # warm up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            once()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
        stats = cProfile.Profile()
        stats.runcall(once)
        text = io.StringIO()
        pstats.Stats(stats, stream=text).sort_stats("tottime").print_stats(rows)
        print(text.getvalue())


def profile_train(rows: int) -> None:
    from nncli.cli.app import main

    with tempfile.TemporaryDirectory() as tmp:
        sys.argv = [
            "nncli",
            "train",
            str(workloads.ROOT / "experiments" / "circles.yaml"),
            "--quiet",
            "--runs-dir",
            tmp,
        ]
        stats = cProfile.Profile()
        with contextlib.suppress(SystemExit):
            stats.runcall(main)
    text = io.StringIO()
    pstats.Stats(stats, stream=text).sort_stats("cumulative").print_stats(rows)
    print(text.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["W1", "W2", "W3", "train"])
    parser.add_argument("--loop", choices=["engine", "tight"], default="engine")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: torch's)")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "train":
        profile_train(args.rows)
    else:
        profile_loop(args.what, args.loop, args.rows)


if __name__ == "__main__":
    main()
