"""What each of the engine's choices buys, one at a time, on the tight loop (bench/loops.py):
torch's defaults; then one intra-op thread (--threads); then + fused Adam; then + gradients
cleared by hand and batches gathered with index_select (the last two at --threads, where a
busy machine disturbs the timings least). Interleaved repeats, medians.

    .venv/bin/python bench/ablation.py [--repeats 5] [--n 12000] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loops
import torch
import workloads
from run import threads

from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine import prepare as engine_mod

STEPS = (  # name, fused Adam, bare loop, use --threads
    ("torch defaults", False, False, False),
    ("--threads intra-op threads", False, False, True),
    ("+ fused Adam", True, False, True),
    ("+ zero_grad by hand, index_select", True, True, True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=12_000, help="W2 training samples")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default")
    with tempfile.TemporaryDirectory() as tmp:
        for w in (workloads.circles("cpu"), workloads.mlp(Path(tmp), "cpu", args.n, args.n // 6)):
            p = engine_mod.prepare(validate(yamlio.loads(w.spec_text, f"{w.key}.yaml")))
            train, test = p.splits["train"], p.splits.get("test")
            times: dict[str, list[float]] = {name: [] for name, *_ in STEPS}
            for r in range(args.repeats + 1):  # the first round warms up
                for name, fused, bare, ours in STEPS[r % 4 :] + STEPS[: r % 4]:
                    model = workloads.hand_model(w, p.device)
                    opt = torch.optim.Adam(model.parameters(), lr=w.lr, fused=fused or None)
                    with threads(args.threads if ours else default_threads):
                        gc.collect()
                        started = time.perf_counter()
                        loops.tight(
                            model, opt, w.loss(), train, test, w.epochs, w.batch, w.binary,
                            w.seed, bare=bare,
                        )  # fmt: skip
                        if r:
                            times[name].append(time.perf_counter() - started)
            base = statistics.median(times[STEPS[0][0]])
            print(f"\n{w.key}: {w.title}")
            for name, *_ in STEPS:
                median = statistics.median(times[name])
                shown = name.replace("--threads", str(args.threads))
                print(f"  {shown:38s} {median:7.3f} s  {base / median:5.2f}x")


if __name__ == "__main__":
    main()
