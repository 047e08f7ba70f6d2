"""Damaged run folders: every command that reads a run exits 2 naming the file and what is
wrong in it, with no traceback, and changes nothing in the folder; `nncli resume` leaves the
run exactly as it was (not marked failed)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import ASSETS, interrupted_run
from typer.testing import CliRunner

from nncli.cli.app import app


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny, interrupted after epoch 2 of 3: every command can read it, resume continues it."""
    root = tmp_path_factory.mktemp("stopped")
    spec = root / "tiny.yaml"
    spec.write_text((ASSETS / "tiny.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.MonkeyPatch.context() as monkeypatch:
        return interrupted_run(CliRunner(), spec, root / "runs", monkeypatch, at=2)


def _json(run: Path, **fields: Any) -> None:
    data = json.loads((run / "run.json").read_text(encoding="utf-8"))
    (run / "run.json").write_text(json.dumps({**data, **fields}), encoding="utf-8")


def _last(run: Path, change: Callable[[dict[str, Any]], object]) -> None:
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def _model_a_string(run: Path) -> None:
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["model"] = "dense"
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def _wrong_shape(state: dict[str, Any]) -> None:
    state["model"]["0.weight"] = torch.zeros(3, 3)


DAMAGE: dict[str, Callable[[Path], object]] = {
    "run.json a list": lambda run: (run / "run.json").write_text("[1, 2]\n"),
    "run.json a wrong type": lambda run: _json(run, epochs_done="2"),
    "config.yaml a list": lambda run: (run / "config.yaml").write_text("- a\n- b\n"),
    "config.yaml model a string": _model_a_string,
    "metrics.csv missing": lambda run: (run / "metrics.csv").unlink(),
    "metrics.csv not UTF-8": lambda run: (run / "metrics.csv").write_bytes(
        (run / "metrics.csv").read_bytes().replace(b"\n2,", b"\n\xff\xfe,")
    ),
    "metrics.csv without a row": lambda run: (run / "metrics.csv").write_text(
        "".join(
            line
            for line in (run / "metrics.csv").read_text().splitlines(keepends=True)
            if not line.startswith("2,")
        )
    ),
    "metrics.csv other columns": lambda run: (run / "metrics.csv").write_text(
        (run / "metrics.csv").read_text().replace("train_loss", "train_los", 1)
    ),
    "last.pt without optimizer": lambda run: _last(run, lambda s: s.pop("optimizer")),
    "last.pt weights of the wrong shape": lambda run: _last(run, _wrong_shape),
    "last.pt model a list": lambda run: _last(
        run, lambda s: s.update(model=list(s["model"].values()))
    ),
}

RUN_JSON = "{run}/run.json: holds a list, not an object"
FIELD = '{run}/run.json: epochs_done should be a whole number, not "2" (edited by hand? fix or delete it)'
CONFIG_LIST = (
    "{run}/config.yaml:1:1  <top>  an experiment file is a map of sections  "
    "(start with `data:`, `model:`, `loss:`)"
)
MODEL = (  # (the line of `model: dense`)
    "{run}/config.yaml:{model_line}:1  model  Input should be a valid dictionary or instance of "
    "ModelSpec, got 'dense'"
)
NO_METRICS = "{run}/metrics.csv: missing (each epoch's row is kept there)"
NOT_UTF8 = "{run}/metrics.csv: not UTF-8 text (byte 0xff on line 3)"
NO_ROW = (
    "{run}/metrics.csv lacks rows for epochs 1 to 2 of {run}/checkpoints/last.pt; it cannot "
    "be continued"
)
OTHER_COLUMNS = (
    "{run}/metrics.csv has other columns ({header}) than this run logs ({columns}); it "
    "cannot be continued"
)
NO_OPTIMIZER = (
    "{run}/checkpoints/last.pt cannot be resumed: it has no 'optimizer' entry (it holds "
    "weights only: use it with predict, eval or export, or train the run again)"
)
SHAPE = (
    "{run}/checkpoints/last.pt does not fit the model of {run}/config.yaml (was config.yaml "
    "edited?): '0.weight' is 3x3 in the checkpoint, 8x2 in the model"
)
NOT_WEIGHTS = (
    "{run}/checkpoints/last.pt is not an nncli checkpoint (its 'model' entry holds no weights)"
)

COMMANDS = ("show", "export", "plot", "predict", "eval", "resume")
# what each command says of each damage; None: it does not read that part, and works
EXPECTED: dict[str, dict[str, str | None]] = {
    "run.json a list": dict.fromkeys(COMMANDS, RUN_JSON),
    "run.json a wrong type": dict.fromkeys(COMMANDS, FIELD),
    "config.yaml a list": dict.fromkeys(COMMANDS, CONFIG_LIST),
    "config.yaml model a string": dict.fromkeys(COMMANDS, MODEL),
    "metrics.csv missing": {**dict.fromkeys(COMMANDS), "plot": NO_METRICS, "resume": NO_METRICS},
    "metrics.csv not UTF-8": {**dict.fromkeys(COMMANDS), "plot": NOT_UTF8, "resume": NOT_UTF8},
    "metrics.csv without a row": {**dict.fromkeys(COMMANDS), "resume": NO_ROW},
    "metrics.csv other columns": {**dict.fromkeys(COMMANDS), "resume": OTHER_COLUMNS},
    "last.pt without optimizer": {**dict.fromkeys(COMMANDS), "resume": NO_OPTIMIZER},
    "last.pt weights of the wrong shape": dict.fromkeys(COMMANDS, SHAPE),
    "last.pt model a list": dict.fromkeys(COMMANDS, NOT_WEIGHTS),
}


def _line(run: Path, text: str) -> int:
    lines = (run / "config.yaml").read_text(encoding="utf-8").splitlines()
    return lines.index(text) + 1 if text in lines else 0


def _header(run: Path) -> dict[str, str]:
    """metrics.csv's header as it is now, and as the run logs it."""
    if not (run / "metrics.csv").is_file():
        return {}
    stopped = (run / "metrics.csv").read_bytes().decode("utf-8", "replace").split("\n", 1)[0]
    return {
        "header": stopped.replace(",", ", "),
        "columns": stopped.replace(",", ", ").replace("train_los,", "train_loss,"),
    }


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_run_folder_is_named_and_left_as_it_was(
    damage: str, command: str, stopped: Path, tmp_path: Path, runner: CliRunner
) -> None:
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    DAMAGE[damage](run)
    rows = tmp_path / "rows.csv"
    rows.write_text("x1,x2\n0.1,0.2\n", encoding="utf-8")
    args = {
        "show": ["show", str(run)],
        "export": ["export", str(run), "--to", "state_dict", "--out", str(tmp_path / "export")],
        "plot": ["plot", str(run), "--out", str(tmp_path / "plots")],
        "predict": ["predict", str(run), str(rows), "--checkpoint", "last"],
        "eval": ["eval", str(run), "--checkpoint", "last"],
        "resume": ["resume", str(run), "-q"],
    }[command]
    before = contents(run)
    result = runner.invoke(app, args)
    expected = EXPECTED[damage][command]
    if expected is None:  # a part this command does not read
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert (
        result.stderr
        == f"error {expected.format(run=run, model_line=_line(run, 'model: dense'), **_header(run))}\n"
    )
    assert result.stdout == ""
    assert contents(run) == before  # read, never rewritten: resume does not mark it failed
