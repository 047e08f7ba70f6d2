"""`source: npy`: two .npy files, memory-mapped; inputs streamed from disk (data.stream)
train the same batches as in memory, and every bad file is refused at its key."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config.spec import load_experiment
from nncli.data import npy as npymod
from nncli.data.pipeline import load, prepare

EXPERIMENT = """\
name: {name}
seed: 7
data:
  source: npy
  x: x.npy
  y: y.npy
  standardize: true
  stream: {stream}
  workers: {workers}
  split: {{val: 0.2, test: 0.2}}
model:
  layers: [{{dense: 8}}, tanh, {{dropout: 0.2}}, {{dense: 1}}]
loss: bce_with_logits
optimizer: {{name: adam, lr: 0.05}}
train: {{epochs: 3, batch_size: 32, device: cpu}}
metrics: [accuracy]
"""


def arrays(folder: Path, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(n, 2)) * [3.0, 0.5] + [10.0, -2.0]).astype(np.float32)
    y = ((x[:, 0] - 10) * (x[:, 1] + 2) > 0).astype(np.int64)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    return x, y


@pytest.fixture
def experiment(tmp_path: Path, write: Callable[..., Path]) -> Callable[..., Path]:
    arrays(tmp_path)

    def make(stream: str = "true", workers: int = 0, name: str = "npy", **lines: str) -> Path:
        text = EXPERIMENT.format(name=name, stream=stream, workers=workers)
        for key, value in lines.items():  # a data line replaced, e.g. x="x: other.npy"
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


def last_weights(folder: Path) -> dict[str, torch.Tensor]:
    state = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
    weights: dict[str, torch.Tensor] = state["model"]
    return weights


def test_streamed_trains_the_same_batches_as_in_memory(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    # shuffle: rows takes every row at random as in memory (chunks, the default, does not)
    spec = experiment("true", name="disk", workers="0\n  shuffle: rows")
    disk, said_disk = train(runner, spec, tmp_path / "runs")
    memory, said_memory = train(runner, experiment("false", name="mem"), tmp_path / "runs")
    assert "data: streamed from disk (600 rows, 4.8 kB; workers 0)" in said_disk
    assert "data: in memory" in said_memory
    assert rows(disk) == rows(memory)
    assert len(rows(disk)) == 3
    mine, theirs = last_weights(disk), last_weights(memory)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    # the figures that draw the data's points draw them from the streamed splits too
    assert (disk / "plots" / "data.png").is_file()
    assert (disk / "plots" / "decision_boundary.png").is_file()


def test_a_streamed_run_takes_chunks_of_rows_unless_told_rows(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    chunks, _ = train(runner, experiment("true", name="chunks"), tmp_path / "runs")
    memory, _ = train(runner, experiment("false", name="mem"), tmp_path / "runs")
    # the same data and model, another order of batches: other numbers, still learning
    assert rows(chunks) != rows(memory)
    assert float(rows(chunks)[-1]["val_accuracy"]) > 0.7  # chance: 0.5


def test_a_shuffle_that_is_no_order_is_refused_at_its_key(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    spec = experiment("true", workers="0\n  shuffle: files")
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert text.startswith(
        f"error {spec}:10:3 data.shuffle Input should be 'chunks' or 'rows', got 'files'"
    ), text
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_workers_read_the_same_rows(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    one, _ = train(runner, experiment("true", name="zero"), tmp_path / "runs")
    two, said = train(runner, experiment("true", workers=2, name="two"), tmp_path / "runs")
    assert "workers 2)" in said
    assert rows(one) == rows(two)


def test_standardize_statistics_from_chunks_equal_those_of_the_whole(
    experiment: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(npymod, "CHUNK_BYTES", 8 * 7)  # 7 rows of 2 float32 a chunk
    spec = load_experiment(experiment("true")).spec
    streamed, indices = prepare(spec.data, spec.seed, "binary")
    assert isinstance(streamed.x, np.memmap)  # the rows stay in their file
    in_memory = load(spec.data.model_copy(update={"stream": False}), spec.seed, "binary")
    assert in_memory.preprocessing is not None and streamed.preprocessing is not None
    whole = in_memory.preprocessing.fit(in_memory.x, indices["train"])
    assert whole.mean is not None and whole.std is not None
    np.testing.assert_allclose(streamed.preprocessing.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.preprocessing.std, whole.std, rtol=1e-12)
    assert whole.mean[0] == pytest.approx(10, abs=0.5)


@pytest.mark.parametrize(("free", "streamed"), [(10**12, False), (4000, True)])
def test_auto_streams_where_the_inputs_would_not_fit(
    experiment: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, free: int, streamed: bool
) -> None:
    # 600 x 2 float32 = 4,800 bytes, twice that with the split tensors made from them
    monkeypatch.setattr(npymod, "available_memory", lambda: free)
    spec = load_experiment(experiment("auto")).spec
    assert isinstance(load(spec.data, spec.seed, "binary").x, np.memmap) is streamed


def test_eval_and_predict_an_npy_run(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    folder, _ = train(runner, experiment("true"), tmp_path / "runs")
    test_loss = rows(folder)[-1]["test_loss"]
    result = runner.invoke(app, ["eval", str(folder), "--format", "csv"])
    assert result.exit_code == 0, result.output
    values = dict(line.split(",") for line in result.output.split()[1:])
    # the test split, read again from the file and evaluated in one pass: the run's last row
    assert float(values["loss"]) == pytest.approx(float(test_loss), rel=1e-6)
    assert float(values["accuracy"]) == pytest.approx(float(rows(folder)[-1]["test_accuracy"]))
    np.save(tmp_path / "new.npy", np.array([[10.0, -2.0], [13.0, -1.0]], dtype=np.float32))
    result = runner.invoke(app, ["predict", str(folder), str(tmp_path / "new.npy")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "row,prediction,probability"
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1"]
    result = runner.invoke(app, ["predict", str(folder), str(tmp_path / "y.npy")])
    assert result.exit_code == 2
    assert "'x' is int64 shaped (600,)" in result.output


def _bad(tmp_path: Path) -> None:
    np.save(tmp_path / "y5.npy", np.zeros(5))
    np.save(tmp_path / "obj.npy", np.array([{}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("x,y\n1,2\n")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:500])
    np.save(tmp_path / "flat.npy", np.zeros(600, dtype=np.float32))


BAD = [
    ("x", "x: nope.npy", "{d}/nope.npy does not exist"),
    ("x", "x: text.npy", "{d}/text.npy is not an .npy file (the magic string is not correct"),
    ("x", "x: obj.npy", "{d}/obj.npy holds object values; data.x must hold numbers"),
    (
        "x",
        "x: cut.npy",
        "{d}/cut.npy is truncated: its header declares 600x2 float32 values (4,928 bytes) but "
        "the file has 500 bytes",
    ),
    (
        "x",
        "x: flat.npy",
        "{d}/flat.npy is shaped (600,); it must hold rows of numbers (samples, features...)",
    ),
    (
        "y",
        "y: y5.npy",
        "{d}/y5.npy is shaped (5,) but {d}/x.npy has 600 rows; the targets must be (N,) or "
        "(N, T) with N = 600, one row per row of data.x",
    ),
    (
        "shape",
        "shape: [3]",
        "data.shape [3] holds 3 values but each sample of {d}/x.npy has 2 (2)",
    ),
]


@pytest.mark.parametrize(("key", "line", "message"), BAD)
@pytest.mark.parametrize("command", ["validate", "train"])
def test_bad_files_are_refused_at_their_key(
    runner: CliRunner,
    experiment: Callable[..., Path],
    tmp_path: Path,
    key: str,
    line: str,
    message: str,
    command: str,
) -> None:
    _bad(tmp_path)
    replace = "x" if key == "shape" else key
    spec = experiment(
        "true", **{replace: f"  {line}" if key != "shape" else f"  x: x.npy\n  {line}"}
    )
    runs = tmp_path / "runs"
    args = [command, str(spec)] + (["--runs-dir", str(runs)] if command == "train" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    at = {"x": 5, "y": 6, "shape": 6}[key]
    text = " ".join(result.output.split())
    assert text.startswith(f"error {spec}:{at}:3 data.{key} {message.format(d=tmp_path)}"), text
    assert "Traceback" not in result.output
    assert not runs.exists()  # nothing written


@pytest.mark.parametrize("dtype", ["<f4", "<f8", "|u1", ">i2"])
def test_rows_are_read_in_the_order_asked_for(tmp_path: Path, dtype: str) -> None:
    x = (np.arange(40 * 3) % 251).astype(dtype).reshape(40, 3)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows = np.array([7, 3, 4, 5, 39, 0, 6, 21, 20], dtype=np.int64)  # runs 3-7 and 20-21
    got = npymod.read_rows(str(tmp_path / "x.npy"), mapped.offset, dtype, 3, rows)
    assert got.dtype == (np.uint8 if dtype == "|u1" else np.float32)  # bytes stay bytes
    assert np.array_equal(got, x[rows].astype(got.dtype))


def test_rows_a_few_apart_are_read_in_one_call_and_come_back_in_the_order_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = np.arange(5000 * 6, dtype=np.float64).reshape(5000, 6)  # rows of 48 bytes
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    calls: list[tuple[int, int]] = []
    preadv = npymod.os.preadv

    def counted(fd: int, buffers: list[memoryview], at: int) -> int:
        calls.append((at, len(buffers[0])))
        return preadv(fd, buffers, at)

    monkeypatch.setattr(npymod.os, "preadv", counted)
    # a chunk-shuffled batch: rows of one window, gaps of a few rows; then a far one
    rows = np.array([40, 7, 9, 8, 200, 41, 3, 4999], dtype=np.int64)
    got = npymod.read_rows(str(mapped.filename), mapped.offset, "<f8", 6, rows)
    assert got.dtype == np.float32
    assert np.array_equal(got, x[rows].astype(np.float32))
    header = mapped.offset
    # 3..200 in one call (rows 48 bytes, gaps under GAP_BYTES), 4999 apart from them
    assert calls == [(header + 3 * 48, 198 * 48), (header + 4999 * 48, 48)]


def test_a_streamed_embedding_must_be_given_its_vocab(
    tmp_path: Path, runner: CliRunner, write: Callable[..., Path]
) -> None:
    # inferred from the two rows prepare reads, it would miss the larger ids of other rows
    # and stop the run at the first batch that holds one
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 4, size=(200, 5))
    ids[150, 2] = 40  # one row with a large id
    np.save(tmp_path / "x.npy", ids)
    np.save(tmp_path / "y.npy", (ids == 3).any(axis=1).astype(np.int64))
    text = (
        "data: {source: npy, x: x.npy, y: y.npy, stream: true}\n"
        "model:\n  layers: [{embedding: 4}, {lstm: 4}, {dense: 2}]\n"
        "loss: cross_entropy\ntrain: {epochs: 1, batch_size: 50, device: cpu}\n"
    )
    spec = write(text, "ids.yaml")
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert " ".join(result.stderr.split()) == (
        f"error {spec}:3:12 model.layers.0 embedding: its vocab is inferred from every "
        "row's ids, but these inputs are streamed from disk and not read up front; give "
        "vocab: (the largest id + 1)"
    )
    assert not (tmp_path / "runs").exists()
    spec.write_text(text.replace("{embedding: 4}", "{embedding: {dim: 4, vocab: 41}}"))
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output


def test_nan_in_a_streamed_file_stops_the_run_naming_its_rows_and_resume_continues(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    # the in-memory path refuses NaN before training; a streamed file is checked as read
    x, _ = arrays(tmp_path)
    broken = x.copy()
    broken[[17, 401], 1] = np.nan
    np.save(tmp_path / "x.npy", broken)
    spec = experiment("true", standardize="  standardize: false")
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"error {spec}:5:3 data.x {tmp_path / 'x.npy'} holds nan on row" in text, text
    assert "(a streamed file's rows are checked as they are read); inputs must be finite" in text
    assert "Traceback" not in result.output
    (run,) = runs.iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    np.save(tmp_path / "x.npy", x)
    result = runner.invoke(app, ["resume", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert len(rows(run)) == 3


def test_nan_in_the_train_rows_is_refused_before_a_run_that_standardizes_starts(
    runner: CliRunner, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    # the statistics pass reads every train row first
    x, _ = arrays(tmp_path)
    x[:, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(experiment("true")), "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert re.search(r"holds inf on rows (\d+, ){4}\d+ and 355 more \(a streamed file", text), text
    assert not runs.exists()
