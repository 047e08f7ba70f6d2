"""Shared fixtures and helpers: a CLI runner, small experiment files written on the fly, a
trained run's checkpoint, and the checks of a refused `nncli train` used across folders."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.errors import SpecError

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
ASSETS = Path(__file__).resolve().parent / "assets"  # experiment files several tests share

# the small experiment most tests train or change: circles, three epochs, on the CPU
TINY = (ASSETS / "tiny.yaml").read_text(encoding="utf-8")
# circles as in the issue: small enough that eight processes train it on two cores
QUICK = TINY.replace("epochs: 3", "epochs: 2")


class Rows:
    """A training sink (nncli.engine.fit.Sink) that keeps each epoch's row in memory."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def epoch_end(self, row: Mapping[str, float], state: Any, last: bool, best: bool) -> None:
        self.rows.append(dict(row))

    def batch_end(self, epoch: int, batch: int, n_batches: int, loss: Any) -> None:
        pass

    def note(self, text: str) -> None:
        raise AssertionError(text)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(text, name="exp.yaml") -> path of a new file under tmp_path."""

    def _write(text: str, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def tiny(write: Callable[..., Path]) -> Path:
    return write(TINY, "tiny.yaml")


@pytest.fixture
def checkpoint(runner: CliRunner, tiny: Path, tmp_path: Path) -> Path:
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip()) / "checkpoints" / "last.pt"


def interrupted_run(
    runner: CliRunner, spec: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch, at: int = 1
) -> Path:
    """The folder of a run of `spec` stopped by Ctrl-C after epoch `at` (in-process)."""
    import nncli.loggers.run_folder

    original = nncli.loggers.run_folder.RunFolderLogger.epoch

    def epoch_end(
        self: nncli.loggers.run_folder.RunFolderLogger,
        row: dict[str, float],
        *args: object,
        **kw: object,
    ) -> None:
        original(self, row, *args, **kw)  # type: ignore[arg-type]
        if row["epoch"] == at:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(nncli.loggers.run_folder.RunFolderLogger, "epoch", epoch_end)
        result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs_dir), "-q"])
    assert result.exit_code == 130, result.output
    (folder,) = runs_dir.iterdir()
    return folder


def problems(text: str, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SpecError) as info:
        validate(yamlio.loads(text, "exp.yaml"), overrides)
    return [str(p) for p in info.value.problems]


def train_refused(runner: CliRunner, path: Path, tmp_path: Path, *args: str) -> str:
    """stderr of `nncli train` that must fail with exit 2, no traceback and no run folder."""
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even the runs folder
    return result.stderr


def refused(runner: CliRunner, path: Path, tmp_path: Path, *args: str) -> str:
    """stderr of `nncli train` that must exit 2 with no traceback and no run folder."""
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "internal error" not in result.output
    assert result.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before
    return result.stderr


def nncli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nncli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def info(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / "run.json").read_text())
    return data


def assert_exports_agree(runner: CliRunner, run: Path, x: torch.Tensor, tmp_path: Path) -> None:
    """`nncli export` to ONNX (run in onnxruntime, in a process of its own) and to
    torch.export gives the trained model's outputs for `x`."""
    import numpy as np
    import torch

    from nncli.trained.load import load_run

    with torch.no_grad():
        want = load_run(run).model(x)
    for fmt in ("onnx", "exported"):
        result = runner.invoke(app, ["export", str(run), "-f", fmt, "--out", str(tmp_path / fmt)])
        assert result.exit_code == 0, result.output
    exported = torch.export.load(str(tmp_path / "exported" / "model.pt2")).module()
    torch.testing.assert_close(exported(x), want)
    np.save(tmp_path / "x.npy", x.numpy())
    code = (
        "import numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(tmp_path / 'onnx' / 'model.onnx')!r})\n"
        f"print(s.run(None, {{'x': np.load({str(tmp_path / 'x.npy')!r})}})[0].tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch.testing.assert_close(torch.tensor(json.loads(out.stdout)), want, rtol=1e-4, atol=1e-5)
