"""Images from a folder: nncli's `source: images` against a plain torchvision
`datasets.ImageFolder` + `DataLoader` script, one epoch each over the same folder of PNGs
(10 class folders), the same CNN, batch, optimizer and pixel scaling (0..1), in separate
processes, interleaved repeat by repeat in one run so that a busy machine slows all alike.
nncli runs twice: in memory (the default for a folder that fits) and streamed
(`stream: true`, each batch decoded in the DataLoader's workers, as torchvision does), both
with the same `workers` as torchvision's DataLoader.

    .venv/bin/python bench/bench_images.py [--n 10000] [--size 32] [--workers 2]
        [--repeats 3] [--torchvision-python PYTHON]

Images per second = images / (seconds from reading the folder to the end of the epoch;
imports, torch's own lazy ones included, come before; nncli's as `nncli train` imports them,
frozen, so that no collection walks torch's objects):
nncli in memory decodes every image once (Pillow, in `--workers` processes) into memory,
then trains; streamed, it checks every file's header (in `--workers` processes), then
decodes each batch in `--workers` DataLoader workers while it trains, as the torchvision
script does. Each side's torch uses the same
number of threads. torchvision must import where the script runs: PyPI's torchvision
does not load beside the CPU build of torch this project installs, so
`--torchvision-python` names another environment's interpreter (one with torch and
torchvision, e.g. `pip install torch==2.14.1 torchvision==0.29.1` in a venv of its own).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODEL = """\
def cnn(size):
    from torch import nn
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, 10),
    )
"""

SPEC = """\
seed: 0
data: {{source: images, path: {folder}, size: [{size}, {size}], stream: {stream},
       workers: {workers}, split: {{test: 0.0}}}}
model:
  layers:
    - conv2d: {{out_channels: 16, kernel_size: 3, padding: 1}}
    - relu
    - maxpool2d: 2
    - conv2d: {{out_channels: 32, kernel_size: 3, padding: 1}}
    - relu
    - maxpool2d: 2
    - flatten
    - dense: 10
loss: cross_entropy
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: 1, batch_size: 64, device: cpu}}
"""

NNCLI = """\
import json, sys, time
from nncli.frozen import import_frozen
import_frozen(["torch._dynamo", "nncli.engine.experiment"])  # as `nncli train` imports them
import torch
sys.path.insert(0, {bench!r})
import loops
from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine.prepare import prepare
torch.set_num_threads({threads})
torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's lazy imports, not timed
import PIL.Image, PIL.ImageOps, PIL.PngImagePlugin  # Pillow's, as torchvision's import does
spec = validate(yamlio.loads({spec!r}, "images.yaml"))
began = time.perf_counter()
p = prepare(spec)
row = loops.engine(p)
seconds = time.perf_counter() - began
print(json.dumps({{"images": len(p.splits["train"][0]), "seconds": seconds, **row}}))
"""

TORCHVISION = """\
import json, time
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
{model}
torch.set_num_threads({threads})
torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's lazy imports, not timed
torch.manual_seed(0)
began = time.perf_counter()
data = datasets.ImageFolder({folder!r}, transform=transforms.ToTensor())
loader = DataLoader(data, batch_size=64, shuffle=True, num_workers={workers})
model = cnn({size})
opt = torch.optim.Adam(model.parameters(), lr=0.001)
loss_fn = nn.CrossEntropyLoss()
model.train()
total = correct = 0
for x, y in loader:
    out = model(x)
    loss = loss_fn(out, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    correct += int((out.argmax(1) == y).sum())
    total += len(y)
seconds = time.perf_counter() - began
print(json.dumps({{"images": total, "seconds": seconds, "train_accuracy": correct / total}}))
"""


def make_folder(folder: Path, n: int, size: int) -> None:
    """`n` PNGs of `size`x`size` RGB in 10 class folders: each class a stripe of its own
    colour and place, under noise, so that one epoch learns something."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(10):
        (folder / f"class{c}").mkdir(parents=True)
    for i in range(n):
        c = i % 10
        pixels = rng.integers(0, 128, size=(size, size, 3), dtype=np.uint8)
        row = c * size // 10
        pixels[row : row + max(1, size // 10), :, c % 3] = 255
        Image.fromarray(pixels).save(folder / f"class{c}" / f"{i:06d}.png")


def run(python: str, code: str) -> dict[str, float]:
    done = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{python} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images")
    parser.add_argument("--size", type=int, default=32, help="height and width")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torchvision-python", default=sys.executable)
    args = parser.parse_args()
    check = subprocess.run(
        [args.torchvision_python, "-c", "import torchvision"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        reason = (check.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(
            f"torchvision does not import with {args.torchvision_python} ({reason}); "
            "name an environment that has it with --torchvision-python"
        )
    bench = str(Path(__file__).resolve().parent)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_folder(folder, args.n, args.size)
        memory = SPEC.format(folder=folder, size=args.size, stream="false", workers=args.workers)
        streamed = SPEC.format(folder=folder, size=args.size, stream="true", workers=args.workers)
        codes = {
            "nncli": (sys.executable, NNCLI.format(bench=bench, spec=memory, threads=args.threads)),
            "streamed": (
                sys.executable,
                NNCLI.format(bench=bench, spec=streamed, threads=args.threads),
            ),
            "torchvision": (
                args.torchvision_python,
                TORCHVISION.format(
                    model=textwrap.dedent(MODEL),
                    folder=str(folder),
                    size=args.size,
                    workers=args.workers,
                    threads=args.threads,
                ),
            ),
        }
        rates: dict[str, list[float]] = {name: [] for name in codes}
        for r in range(args.repeats):
            for name in list(codes) if r % 2 == 0 else list(codes)[::-1]:
                python, code = codes[name]
                result = run(python, code)
                rates[name].append(result["images"] / result["seconds"])
                print(f"  {name:12s} {rates[name][-1]:8.0f} images/s  {result}", flush=True)
    print(
        f"{args.n:,} PNGs of {args.size}x{args.size}, one epoch, batch 64, {args.threads} thread(s)"
    )
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"{name:12s} {value:8.0f} images/s (median of {args.repeats})")
    print(
        f"nncli in memory / torchvision ImageFolder ({args.workers} workers): "
        f"{median['nncli'] / median['torchvision']:.2f}x"
    )
    print(
        f"nncli streamed ({args.workers} workers) / torchvision ImageFolder ({args.workers} "
        f"workers): {median['streamed'] / median['torchvision']:.2f}x"
    )


if __name__ == "__main__":
    main()
