"""Streamed tables against the same tables read whole: the columns of a Parquet file (an
index kept by pandas included), the categories of a CSV column numeric in some chunks and
text in others, and where a streamed row's bad value is named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nncli.cli.app import app

SPEC = """\
name: t
seed: 5
data: {{source: {source}, path: {path}, target: label, stream: {stream}{extra}}}
model:
  layers: [{{dense: 4}}, {{dense: 2}}]
loss: cross_entropy
optimizer: {{name: adam, lr: 0.05}}
train: {{epochs: 1, batch_size: 8, device: cpu}}
metrics: [accuracy]
"""


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NNCLI_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tables"


def loaded(spec: Path) -> tuple[np.ndarray, list[str], dict[str, list[str]]]:
    """The table's inputs (read into memory), feature names and categories."""
    from nncli.config.spec import load_experiment
    from nncli.data.pipeline import load

    s = load_experiment(spec).spec
    data = load(s.data, s.seed, "index")
    return np.array(data.x), list(data.feature_names or []), dict(data.categories or {})


def ids(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    a = rng.integers(-16, 16, n) / 4
    return pd.DataFrame(
        {"id": rng.permutation(n) + 100, "a": a, "label": np.where(a > 0, "up", "down")}
    )


def test_a_named_parquet_index_is_a_column_streamed_in_memory_and_in_predict(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    ids().set_index("id").to_parquet(tmp_path / "t.parquet")
    found = {}
    for stream in ("false", "true"):
        spec = write(SPEC.format(source="parquet", path="t.parquet", stream=stream, extra=""))
        found[stream] = loaded(spec)
    x, names, _ = found["false"]
    assert names == ["a", "id"]  # the index is stored last
    np.testing.assert_array_equal(x[:, 1], ids()["id"])
    np.testing.assert_array_equal(found["true"][0], x)
    assert found["true"][1] == names
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    run = Path(result.output.strip().splitlines()[-1])
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "t.parquet")])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 41
