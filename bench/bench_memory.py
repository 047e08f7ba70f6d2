"""Host memory of W2 (the MNIST-sized MLP on .npz files): nncli against a hand-written script.

    .venv/bin/python bench/bench_memory.py              # 60,000 + 10,000 samples, 3 repeats
    .venv/bin/python bench/bench_memory.py --n 12000    # smaller and quicker

Each side runs in its own process (peak RSS, ru_maxrss, is per process), interleaved:
  hand:   np.load the two files, torch.from_numpy, one epoch of the tight loop
          (bench/loops.py), the test split evaluated; the least a careful person writes;
  nncli:  prepare() of the W2 spec (read, split, preprocess, tensors) and one epoch of
          the engine on it;
  import: `import torch` and nncli's engine alone, the floor both stand on.
Printed: each side's peak above the floor, in MB and as a multiple of the data's size
(float32 inputs), and nncli's peak over the hand-written script's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers as plain modules

import processes
import workloads

HAND = """\
import sys
sys.path.insert(0, {bench!r})
import numpy as np, torch
import loops, workloads
torch.set_num_threads(1)
with np.load({train!r}) as f:
    train = torch.from_numpy(f["x"]), torch.from_numpy(f["y"])
with np.load({test!r}) as f:
    test = torch.from_numpy(f["x"]), torch.from_numpy(f["y"])
torch.manual_seed(0)
model = workloads.mlp_model()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loops.tight(model, opt, torch.nn.CrossEntropyLoss(), train, test, 1, 64, False, 0)
"""

NNCLI = """\
import sys
sys.path.insert(0, {bench!r})
import loops
from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine.prepare import prepare
spec = validate(yamlio.loads({spec!r}, "w2.yaml"))
loops.engine(prepare(spec))
"""

FLOOR = "import torch\nimport nncli.engine.fit\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60_000, help="training samples")
    parser.add_argument("--n-test", type=int, default=10_000, help="test samples")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench = str(Path(__file__).resolve().parent)
    with tempfile.TemporaryDirectory() as tmp:
        w = workloads.mlp(Path(tmp), "cpu", args.n, args.n_test)
        train, test = str(Path(tmp) / "w2_train.npz"), str(Path(tmp) / "w2_test.npz")
        scripts = {
            "import": FLOOR,
            "hand": HAND.format(bench=bench, train=train, test=test),
            "nncli": NNCLI.format(bench=bench, spec=w.spec_text),
        }
        peaks: dict[str, list[float]] = {name: [] for name in scripts}
        for r in range(args.repeats):
            names = list(scripts) if r % 2 == 0 else list(scripts)[::-1]
            for name in names:
                _, rss = processes.run([sys.executable, "-c", scripts[name]])
                peaks[name].append(rss)
    data_mb = (args.n + args.n_test) * 784 * 4 / 2**20
    floor = statistics.median(peaks["import"])
    print(f"W2 inputs: {args.n:,} + {args.n_test:,} samples x 784 float32 = {data_mb:.0f} MB")
    print(f"floor (import torch and the engine): {floor:.0f} MB")
    above = {}
    for name in ("hand", "nncli"):
        above[name] = statistics.median(peaks[name]) - floor
        print(
            f"{name:6s} peak {above[name]:6.0f} MB above the floor "
            f"= {above[name] / data_mb:.2f} x the data"
        )
    print(f"nncli / hand: {above['nncli'] / above['hand']:.2f}")


if __name__ == "__main__":
    main()
