"""Streamed data (`data.stream: true`) in real processes: a run killed with SIGKILL after
some epochs and resumed ends exactly as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_resume import info, nncli, rows_without_time, start, wait_for_rows, weights

# long enough epochs (300 batches) that a kill lands between epochs, not after the run
STREAMED = """\
name: streamed
seed: 3
data: {{source: npy, x: x.npy, y: y.npy, standardize: true, stream: true, workers: {workers},
       split: {{val: 0.2, test: 0.2}}}}
model:
  layers: [dense: 16, relu, dropout: 0.1, dense: 1]
loss: bce_with_logits
optimizer: {{name: adam, lr: 0.01}}
scheduler: {{name: cosine, warmup_epochs: 1}}
train: {{epochs: 6, batch_size: 8, device: cpu}}
metrics: [accuracy]
"""


def streamed(folder: Path, workers: int = 0) -> Path:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 4)).astype(np.float32) * 5 + 3
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", (x[:, 0] * x[:, 1] > 9).astype(np.int64))
    spec = folder / "streamed.yaml"
    spec.write_text(STREAMED.format(workers=workers), encoding="utf-8")
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_a_streamed_run_killed_and_resumed_equals_an_uninterrupted_one(
    tmp_path: Path, workers: int
) -> None:
    spec = streamed(tmp_path, workers)
    whole = nncli("train", str(spec), "--runs-dir", str(tmp_path / "whole"), "-q")
    assert whole.returncode == 0, whole.stderr
    reference = Path(whole.stdout.strip())

    proc = start("train", str(spec), "--runs-dir", str(tmp_path / "killed"), "-q")
    folder = wait_for_rows(tmp_path / "killed", 2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()  # SIGKILL
    proc.communicate(timeout=60)
    assert info(folder)["status"] == "running"  # nobody could record the kill
    assert len(rows_without_time(folder)) < 6

    resumed = nncli("resume", str(folder), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert rows_without_time(folder) == rows_without_time(reference)
    assert [int(r["epoch"]) for r in rows_without_time(folder)] == list(range(1, 7))
    mine, theirs = weights(folder), weights(reference)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert info(folder)["status"] == "completed"
