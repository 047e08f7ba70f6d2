"""A streamed table (`source: parquet` or `csv` with data.stream: true), in real processes:
killed with SIGKILL and resumed, it ends exactly as an uninterrupted run, the resume reading
the cache file the first process built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_resume import info, nncli, rows_without_time, start, wait_for_rows, weights

# long enough epochs (300 batches) that a kill lands between epochs, not after the run
TABLE = """\
name: table
seed: 3
data: {{source: {source}, path: t.{source}, target: y, fill: mean, stream: true,
       shuffle: {shuffle}, split: {{val: 0.2, test: 0.2}}}}
model:
  layers: [dense: 16, relu, dropout: 0.1, dense: 1]
loss: bce_with_logits
optimizer: {{name: adam, lr: 0.01}}
scheduler: {{name: cosine, warmup_epochs: 1}}
train: {{epochs: 6, batch_size: 8, device: cpu}}
metrics: [accuracy]
"""


@pytest.mark.slow
@pytest.mark.parametrize(("source", "shuffle"), [("parquet", "chunks"), ("csv", "rows")])
def test_a_streamed_table_killed_and_resumed_equals_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, shuffle: str
) -> None:
    monkeypatch.setenv("NNCLI_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    x = rng.integers(-40, 40, size=(4000, 64)) / 8 + 3
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(64)])
    frame["kind"] = rng.choice(["p", "q"], 4000)
    frame["y"] = (x[:, 0] * x[:, 1] > 9).astype(int)
    frame.loc[11, "x5"] = np.nan
    if source == "csv":
        frame.to_csv(tmp_path / "t.csv", index=False)
    else:
        frame.to_parquet(tmp_path / "t.parquet", index=False, row_group_size=1000)
    spec = tmp_path / "table.yaml"
    spec.write_text(TABLE.format(source=source, shuffle=shuffle), encoding="utf-8")
    whole = nncli("train", str(spec), "--runs-dir", str(tmp_path / "whole"), "-q")
    assert whole.returncode == 0, whole.stderr
    reference = Path(whole.stdout.strip())
    (cache,) = (tmp_path / "cache" / "tables").glob("*.npy")
    stamp = cache.stat().st_mtime_ns

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
    # every process read the one cache file the first built
    assert cache.stat().st_mtime_ns == stamp
    assert list(cache.parent.iterdir()) == [cache]
