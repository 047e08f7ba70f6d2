"""`source: parquet` and streamed tables: a Parquet file trains as the CSV of the same table
does; a table streamed (data.stream) through its encoded cache file trains to the in-memory
run's numbers; the cache is reused until its file changes; bad tables are refused at their
row before any run folder exists."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.data import tablecache, tablechunks, tablestream

EXPERIMENT = """\
name: {name}
seed: 5
data:
  source: {source}
  path: {path}
  target: label
  fill: mean
  stream: {stream}
  shuffle: rows
  split: {{val: 0.2, test: 0.2}}
model:
  layers: [{{dense: 8}}, tanh, {{dropout: 0.2}}, {{dense: 3}}]
loss: cross_entropy
optimizer: {{name: adam, lr: 0.05}}
train: {{epochs: 3, batch_size: 32, device: cpu}}
metrics: [accuracy]
"""


def table(n: int = 600) -> pd.DataFrame:
    """Numbers in eighths (the CSV's text is exact), a text column, a missing cell."""
    rng = np.random.default_rng(0)
    a = rng.integers(-80, 80, n) / 8
    b = rng.integers(-40, 40, n) / 8
    color = rng.choice(["red", "green", "blue"], n)
    label = np.where(a + b > 2, "high", np.where(a + b < -2, "low", "mid"))
    frame = pd.DataFrame({"a": a, "b": b, "color": color, "label": label})
    frame.loc[7, "b"] = np.nan
    return frame


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NNCLI_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tables"


@pytest.fixture
def experiment(tmp_path: Path, write: Callable[..., Path]) -> Callable[..., Path]:
    frame = table()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)

    def make(source: str, stream: str, name: str = "run", **lines: str) -> Path:
        path = "t.parquet" if source == "parquet" else "t.csv"
        text = EXPERIMENT.format(name=name, source=source, path=path, stream=stream)
        for key, value in lines.items():  # a data line replaced, e.g. fill="fill: median"
            text = "\n".join(value if ln.startswith(f"  {key}:") else ln for ln in text.split("\n"))
        return write(text, f"{name}.yaml")

    return make


def train(runner: CliRunner, spec: Path, runs: Path) -> tuple[Path, str]:
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1]), result.output


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def refused(runner: CliRunner, spec: Path, runs: Path) -> str:
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not runs.exists()
    return " ".join(result.output.split())


def test_parquet_and_csv_in_memory_and_streamed_train_alike(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path, cache: Path
) -> None:
    runs = tmp_path / "runs"
    csv_memory, said = train(runner, experiment("csv", "false", "cm"), runs)
    assert "data: in memory" in said
    parquet_memory, _ = train(runner, experiment("parquet", "false", "pm"), runs)
    parquet_disk, said_parquet = train(runner, experiment("parquet", "true", "pd"), runs)
    csv_disk, said_csv = train(runner, experiment("csv", "true", "cd"), runs)
    assert "data: streamed from disk (600 rows, 12.0 kB; workers 0); cache " in said_parquet
    assert " built (" in said_parquet and " built (" in said_csv
    assert len(rows(csv_memory)) == 3
    assert rows(parquet_memory) == rows(csv_memory)
    assert rows(parquet_disk) == rows(csv_memory)
    assert rows(csv_disk) == rows(csv_memory)
    # the same preprocessing learnt: fill values and statistics from the train split's chunks
    memory = json.loads((csv_memory / "preprocessing.json").read_text())
    for folder in (parquet_disk, csv_disk):
        streamed = json.loads((folder / "preprocessing.json").read_text())
        for key in ("fill_values", "mean", "std"):
            np.testing.assert_allclose(streamed.pop(key), memory[key], rtol=1e-12)
        assert {**streamed, "source": "csv"} == {
            k: v for k, v in memory.items() if k not in ("fill_values", "mean", "std")
        }
    assert len(list(cache.glob("*.npy"))) == 2  # one cache file per source file


def test_the_cache_is_reused_until_its_file_changes(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path, cache: Path
) -> None:
    spec = experiment("parquet", "true")
    first, _ = train(runner, spec, tmp_path / "runs")
    (built,) = cache.glob("*.npy")
    stamp, body = built.stat().st_mtime_ns, built.read_bytes()
    assert np.load(built).shape == (600, 5)  # a, b and the three colours, float32
    again, said = train(runner, spec, tmp_path / "runs")
    assert f"cache {built} reused (" in said
    assert built.stat().st_mtime_ns == stamp and built.read_bytes() == body
    assert rows(again) == rows(first)
    # the file changed (size and mtime): its cache is built again, under another key
    frame = table(700)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    tablecache.release()  # as the runs' processes would have ended
    _, said = train(runner, spec, tmp_path / "runs")
    assert " built (" in said
    (rebuilt,) = cache.glob("*.npy")  # the older cache of the file removed
    assert rebuilt != built
    assert not list(cache.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_streamed_missing_cells_are_refused_at_their_row_in_a_later_chunk(
    runner: CliRunner,
    experiment: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,
    source: str,
) -> None:
    monkeypatch.setattr(tablechunks, "CHUNK_ROWS", 64)
    frame = table()
    frame.loc[7, "b"] = 1.0
    frame.loc[[150, 151], "b"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    spec = experiment(source, "true", fill="  fill: null")
    text = refused(runner, spec, tmp_path / "runs")
    # rows 150 and 151 (from 0), in the third chunk, lack b: CSV lines 152 and 153
    where = "lines 152, 153" if source == "csv" else "rows 151, 152"
    name = tmp_path / f"t.{source}"
    assert f"column 'b' of {name} has missing values on {where}; fill them in" in text, text
    assert "or set data.fill: mean (or zero)" in text  # a streamed table takes no median
    assert not list(cache.glob("*"))  # nothing half written


def test_text_in_a_later_chunk_of_a_numeric_csv_column_makes_it_text_as_in_memory(
    runner: CliRunner,
    experiment: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tablechunks, "CHUNK_ROWS", 64)
    frame = table()
    frame["a"] = frame["a"].astype(object)
    frame.loc[300, "a"] = "n/a?"
    frame.to_csv(tmp_path / "t.csv", index=False)
    said = {
        stream: refused(runner, experiment("csv", stream, f"s{stream}"), tmp_path / "runs")
        for stream in ("false", "true")
    }
    name = tmp_path / "t.csv"
    assert (
        f"column 'a' of {name} holds 157 distinct values, more than data.max_categories 50: "
        "exclude it" in said["false"]
    ), said["false"]
    # streamed, the column is read again as text, as the whole file is read (and refused
    # once its values pass the limit, not counted to the end)
    assert (
        f"column 'a' of {name} holds more than data.max_categories 50 distinct values: "
        "exclude it (data.exclude), or raise max_categories" in said["true"]
    ), said["true"]


def test_a_column_it_lacks_and_a_median_fill_are_refused_before_reading(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    spec = experiment("parquet", "true", target="  target: lable")
    text = refused(runner, spec, tmp_path / "runs")
    assert text.startswith(
        f"error {spec}:6:3 data.target column 'lable' is not in {tmp_path / 't.parquet'}"
    ), text
    assert "did you mean 'label'?" in text
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    assert "did you mean 'label'?" in " ".join(result.output.split())
    spec = experiment("parquet", "true", fill="  fill: median")
    text = refused(runner, spec, tmp_path / "runs")
    assert text.startswith(f"error {spec}:7:3 data.fill median cannot be found in chunks"), text
    assert "use fill: mean" in text


def test_no_room_for_the_cache_is_refused_naming_nncli_cache(
    runner: CliRunner,
    experiment: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usage = tablestream.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(tablestream.shutil, "disk_usage", lambda _: usage._replace(free=1000))
    text = refused(runner, experiment("csv", "true"), tmp_path / "runs")
    assert "needs its 600 rows encoded in a cache file of 12.1 kB, but " in text, text
    assert "has 1.0 kB free" in text and "set NNCLI_CACHE" in text


def test_predict_and_eval_take_a_parquet_file(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    run, _ = train(runner, experiment("parquet", "false"), tmp_path / "runs")
    out = {}
    for suffix in ("csv", "parquet"):
        result = runner.invoke(app, ["predict", str(run), str(tmp_path / f"t.{suffix}")])
        assert result.exit_code == 0, result.output
        out[suffix] = result.output
    assert out["parquet"] == out["csv"]
    assert len(out["csv"].strip().splitlines()) == 601
    result = runner.invoke(app, ["eval", str(run), "--data", str(tmp_path / "t.parquet")])
    assert result.exit_code == 0, result.output


def test_without_pyarrow_the_extra_is_named(experiment: Callable[..., Path]) -> None:
    spec = experiment("parquet", "false")
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from nncli.cli.app import main; sys.argv = ['nncli', 'validate', sys.argv[1]]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(spec)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    assert "pip install 'nncli[parquet]'" in said, said
    assert "Traceback" not in said


def test_a_relative_nncli_cache_is_used_and_reported(
    runner: CliRunner,
    experiment: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNCLI_CACHE", "here")
    _, said = train(runner, experiment("csv", "true"), tmp_path / "runs")
    (built,) = (tmp_path / "here" / "tables").glob("*.npy")
    assert f"; cache {built} built (12.1 kB in " in said, said


@pytest.mark.parametrize("source", ["csv", "parquet"])
@pytest.mark.parametrize(("free", "streamed"), [(10**12, False), (10_000, True)])
def test_auto_streams_a_table_whose_cells_would_not_fit(
    experiment: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    free: int,
    streamed: bool,
) -> None:
    from nncli.config.spec import load_experiment
    from nncli.data import npy
    from nncli.data.pipeline import load

    # 600 rows of 4 columns: 2,400 cells, 19,200 bytes as two float32 copies
    monkeypatch.setattr(npy, "available_memory", lambda: free)
    spec = load_experiment(experiment(source, "auto")).spec
    x = load(spec.data, spec.seed, "index").x
    assert isinstance(x, np.memmap) is streamed
    assert x.shape == (600, 5)


def test_a_parquet_file_is_streamed_as_parquet_whatever_its_name(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "t.parquet").rename(tmp_path / "table.bin")
    spec = experiment("parquet", "true", path="  path: table.bin")
    _, said = train(runner, spec, tmp_path / "runs")
    assert "data: streamed from disk (600 rows, 12.0 kB; workers 0); cache " in said


def test_a_folder_of_parquet_parts_is_refused_with_how_to_join_them(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    parts = tmp_path / "parts.parquet"  # as Spark or Dask write a data set
    parts.mkdir()
    table().iloc[:300].to_parquet(parts / "part-0.parquet", index=False)
    table().iloc[300:].to_parquet(parts / "part-1.parquet", index=False)
    spec = experiment("parquet", "false", path="  path: parts.parquet")
    for command in (["validate", str(spec)], ["train", str(spec), "--runs-dir", "runs"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert (
            f"data.path {parts} is a folder (a data set written in parts), not a Parquet " in text
        )
        assert "combine the parts into one, e.g. pyarrow.parquet.write_table(" in text
