"""nncli's engine against PyTorch Lightning and Keras 3 (torch backend) on W1 and W2.

    pip install lightning keras                  # not nncli's dependencies: bench only
    .venv/bin/python bench/bench_frameworks.py   # W1, and W2 on 60,000 samples; 3 repeats
    .venv/bin/python bench/bench_frameworks.py --n 12000 --threads 1

In one process, interleaved repeat by repeat: the tight hand-written loop (bench/loops.py),
nncli's engine, Lightning's Trainer and Keras's `fit`, on the same tensors, the same
network, optimizer, batch size and epochs, the test split evaluated after every epoch.
Timed: the training call alone (model, data and trainer built before the clock starts), after
one warm-up epoch of each. Printed: medians and each one's time over the engine's.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers as plain modules

import loops
import torch
import workloads
from torch import nn

from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine import prepare as engine_mod

Split = tuple[torch.Tensor, torch.Tensor]
SIDES = ("tight", "engine", "lightning", "keras")


def lightning_fit(
    w: workloads.Workload, train: Split, test: Split, epochs: int
) -> Callable[[], None]:
    """A LightningModule around the hand-written network, as its docs write one."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    loss_fn = w.loss()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = workloads.hand_model(w, torch.device("cpu"))

        def training_step(self, batch: Split, _: int) -> torch.Tensor:
            x, y = batch
            loss: torch.Tensor = loss_fn(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Split, _: int) -> None:
            x, y = batch
            out = self.net(x)
            hit = (out > 0.5).to(y.dtype) == y if w.binary else out.argmax(1) == y
            self.log("test_loss", loss_fn(out, y))
            self.log("test_accuracy", hit.float().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=w.lr)

    model = Module()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    train_loader = DataLoader(TensorDataset(*train), batch_size=w.batch, shuffle=True)
    test_loader = DataLoader(TensorDataset(*test), batch_size=1024)
    return lambda: trainer.fit(model, train_loader, test_loader)


def keras_fit(w: workloads.Workload, train: Split, test: Split, epochs: int) -> Callable[[], None]:
    """The same network in Keras 3, compiled and fitted the way its guides do."""
    import keras

    layers: list[Any] = []
    for module in workloads.hand_model(w, torch.device("cpu")):
        if isinstance(module, nn.Linear):
            layers.append(keras.layers.Dense(module.out_features))
        elif isinstance(module, nn.Dropout):
            layers.append(keras.layers.Dropout(module.p))
        else:
            name = {nn.GELU: "gelu", nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}[type(module)]
            layers.append(keras.layers.Activation(name))
    model = keras.Sequential([keras.Input(shape=tuple(train[0].shape[1:])), *layers])
    keras.utils.set_random_seed(w.seed)
    # W1 ends in a sigmoid (probabilities), W2 in logits, as the hand-written networks do
    loss = (
        "binary_crossentropy"
        if w.binary
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.compile(optimizer=keras.optimizers.Adam(w.lr), loss=loss, metrics=["accuracy"])
    x, y = train[0].numpy(), train[1].numpy()
    xt, yt = test[0].numpy(), test[1].numpy()
    return lambda: model.fit(
        x, y, batch_size=w.batch, epochs=epochs, validation_data=(xt, yt), verbose=0
    )


def side(
    name: str, w: workloads.Workload, spec: Any, train: Split, test: Split, epochs: int
) -> Callable[[], Any]:
    """Everything built, nothing trained: the call the clock times."""
    if name == "engine":
        p = engine_mod.prepare(
            spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": epochs})})
        )
        return lambda: loops.engine(p)
    if name == "tight":
        model = workloads.hand_model(w, torch.device("cpu"))
        opt = torch.optim.Adam(model.parameters(), lr=w.lr)
        args = (model, opt, w.loss(), train, test, epochs, w.batch, w.binary, w.seed)
        return lambda: loops.tight(*args)
    if name == "lightning":
        return lightning_fit(w, train, test, epochs)
    return keras_fit(w, train, test, epochs)


def bench(w: workloads.Workload, repeats: int) -> dict[str, list[float]]:
    spec = validate(yamlio.loads(w.spec_text, f"{w.key}.yaml"))
    p0 = engine_mod.prepare(spec)
    train, test = p0.splits["train"], p0.splits["test"]
    del p0
    for name in SIDES:  # warm-up: first-call costs out of the timings
        side(name, w, spec, train, test, 1)()
    times: dict[str, list[float]] = {name: [] for name in SIDES}
    for r in range(repeats):
        for name in SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]:
            call = side(name, w, spec, train, test, w.epochs)
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60_000, help="W2 training samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads for all four")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # Lightning's advice on DataLoader workers and the like
    if args.threads:
        torch.set_num_threads(args.threads)
    import keras
    import lightning

    print(
        f"torch {torch.__version__}, lightning {lightning.__version__}, keras "
        f"{keras.__version__} ({keras.backend.backend()}), {torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for w in (workloads.circles("cpu"), workloads.mlp(Path(tmp), "cpu", args.n, 10_000)):
            times = bench(w, args.repeats)
            engine = statistics.median(times["engine"])
            print(f"\n{w.key}: {w.title}")
            for name in SIDES:
                median = statistics.median(times[name])
                runs = ", ".join(f"{t:.3f}" for t in times[name])
                print(f"  {name:9s} {median:7.3f} s  {median / engine:5.2f}x the engine  ({runs})")


if __name__ == "__main__":
    main()
