"""`source: images` streamed (`data.stream`): the file list kept, each batch decoded as it is
read (by `decode`, as in memory), so a streamed run trains exactly as the same run in memory;
every file's header is checked before the run starts, and a file that breaks later stops the
run naming it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_sources import params
from test_images import square, write_folder
from typer.testing import CliRunner

from nncli import data as datamod
from nncli.cli.app import app
from nncli.data import imagefiles
from nncli.data import npy as npymod
from nncli.data.imagefiles import ImageFiles

SPEC = """\
name: {name}
seed: 4
data:
  source: images
  path: {root}
  size: [6, 6]
  channels: 1
  standardize: true
  stream: {stream}
  workers: {workers}
  split: {{val: 0.25, test: 0.25}}
model:
  layers: [flatten, dense: 8, relu, dropout: 0.1, dense: 2]
loss: cross_entropy
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: 3, batch_size: 4, device: cpu}}
metrics: [accuracy]
"""


def experiment(tmp_path: Path, root: Path, stream: str, workers: int = 0, more: str = "") -> Path:
    spec = tmp_path / f"{stream}{workers}.yaml"
    text = SPEC.format(name=f"s{stream}", root=root, stream=stream, workers=workers)
    spec.write_text(text.replace("  workers:", f"{more}  workers:") if more else text)
    return spec


def train(spec: Path, runs: Path, code: int = 0) -> tuple[Path, str]:
    result = CliRunner().invoke(app, ["train", str(spec), "--runs-dir", str(runs)])
    assert result.exit_code == code, result.output
    return Path(result.stdout.strip().splitlines()[-1]), result.output


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    state = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
    found: dict[str, torch.Tensor] = state["model"]
    return found


@pytest.mark.parametrize("workers", [0, 2])
def test_a_streamed_folder_trains_exactly_as_in_memory(tmp_path: Path, workers: int) -> None:
    root = write_folder(tmp_path / "f", n=40)
    disk, said = train(experiment(tmp_path, root, "true", workers), tmp_path / "runs")
    memory, said_memory = train(experiment(tmp_path, root, "false"), tmp_path / "runs")
    assert f"data: streamed from disk (40 rows, 5.8 kB; workers {workers})" in said
    assert "data: in memory" in said_memory
    assert rows(disk) == rows(memory)
    mine, theirs = weights(disk), weights(memory)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    # the same figures, misclassified images drawn from the streamed split too
    plots = sorted(f.name for f in (disk / "plots").iterdir())
    assert plots == sorted(f.name for f in (memory / "plots").iterdir())
    assert "misclassified.png" in plots


def test_the_files_are_decoded_when_read_as_the_in_memory_path_holds_them(
    tmp_path: Path,
) -> None:
    root = write_folder(tmp_path / "f")
    section = f"source: images\npath: {root}\nsize: [5, 7]\ncrop: center"
    streamed = datamod.load(params(section + "\nstream: true"), seed=0)
    memory = datamod.load(params(section + "\nstream: false"), seed=0)
    assert isinstance(streamed.x, ImageFiles) and streamed.x.shape == (24, 105)
    assert np.array_equal(streamed.x[np.arange(24)], memory.x)
    assert np.array_equal(streamed.x.read(np.array([5, 0, 5])), memory.x[[5, 0, 5]])
    assert streamed.x[:0].shape == (0, 105)


def test_auto_streams_images_whose_pixels_would_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_folder(tmp_path / "f")
    opened: list[Path] = []
    monkeypatch.setattr(npymod, "available_memory", lambda: 20 * 36 * 4 * 2)  # 20 of 24 fit
    monkeypatch.setattr("nncli.data.imagefiles.decode", lambda *a: opened.append(a[0]))
    dataset = datamod.load(params(f"source: images\npath: {root}\nsize: [6, 6]\nchannels: 1"), 0)
    assert isinstance(dataset.x, ImageFiles) and len(dataset.x) == 24
    assert opened == []  # nothing decoded before training


def test_bad_headers_are_refused_or_skipped_before_the_run_starts(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f")
    (root / "right" / "text.jpg").write_text("not an image")
    spec = experiment(tmp_path, root, "true")
    result = CliRunner().invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert result.stderr.replace("\n", " ").startswith(
        f"error {spec}:5:3  data.path  {root}: 1 of 25 images cannot be read: "
        f"{root}/right/text.jpg (cannot identify image file '{root}/right/text.jpg'); fix or "
        "remove them, or set data.skip_bad: true to leave them out"
    ), result.stderr
    assert not (tmp_path / "runs").exists()
    skipping = experiment(tmp_path, root, "true", more="  skip_bad: true\n")
    folder, said = train(skipping, tmp_path / "runs")
    assert "1 of 25 images cannot be read" in said and "left out (data.skip_bad)" in said
    assert json.loads((folder / "run.json").read_text())["status"] == "completed"


def test_a_file_broken_after_the_start_stops_the_run_naming_it_and_resume_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_folder(tmp_path / "f")
    victim = root / "left" / "004.png"
    whole = victim.read_bytes()
    peek = imagefiles.peek

    def break_after_checks(path: str | Path) -> None:  # the header passes; the pixels are gone
        peek(path)
        if Path(path) == victim:
            victim.write_bytes(whole[: len(whole) // 2])

    monkeypatch.setattr(imagefiles, "peek", break_after_checks)
    spec = experiment(tmp_path, root, "true")
    _, said = train(spec, tmp_path / "runs", code=2)
    assert " ".join(said.split()).endswith(
        f"error {spec}:5:3 data.path {victim} cannot be read (image file is truncated), though "
        "its header could when the run started; restore the file and resume the run"
    ), said
    assert "Traceback" not in said
    run = next((tmp_path / "runs").iterdir())
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    victim.write_bytes(whole)
    monkeypatch.setattr(imagefiles, "peek", peek)
    result = CliRunner().invoke(app, ["resume", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert len(rows(run)) == 3


def test_eval_and_predict_on_a_streamed_run(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "f", n=40)
    folder, _ = train(experiment(tmp_path, root, "true"), tmp_path / "runs")
    result = CliRunner().invoke(app, ["eval", str(folder), "--format", "csv"])
    assert result.exit_code == 0, result.output
    values = dict(line.split(",") for line in result.output.split()[1:])
    last = rows(folder)[-1]
    assert float(values["accuracy"]) == pytest.approx(float(last["test_accuracy"]))
    assert float(values["loss"]) == pytest.approx(float(last["test_loss"]), rel=1e-5)
    one = tmp_path / "one.png"
    Image.fromarray(square(1, 12, 99)).save(one)
    result = CliRunner().invoke(app, ["predict", str(folder), str(one)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "path,prediction,probability"
    assert result.stdout.splitlines()[1].split(",")[0] == str(one)
