from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nncli.cli.app import app

LOAD = {
    "state_dict": "",
    "exported": "m = torch.export.load(path).module()",
    "torchscript": "m = torch.jit.load(path)",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runner = CliRunner()
    root = Path(__file__).resolve().parent.parent
    runs_dir = tmp_path_factory.mktemp("runs")
    result = runner.invoke(
        app,
        [
            "train",
            str(root / "experiments" / "circles.yaml"),
            "--runs-dir",
            str(runs_dir),
            "-q",
            "--set",
            "train.epochs=3",
        ],
    )
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def reference(run: Path, x: torch.Tensor) -> torch.Tensor:
    from nncli.config.spec import load_spec
    from nncli.engine.model import build_model
    from nncli.engine.state import load_checkpoint

    model, _ = build_model(load_spec(run / "config.yaml").model.layers, x)
    model.load_state_dict(load_checkpoint(run / "checkpoints" / "last.pt")["model"])
    model.eval()
    with torch.no_grad():
        out: torch.Tensor = model(x)
    return out


@pytest.mark.parametrize("fmt", ["exported", "torchscript"])
def test_exported_model_loads_without_nncli(runner: CliRunner, trained: Path, fmt: str) -> None:
    result = runner.invoke(app, ["export", str(trained), "--format", fmt])
    assert result.exit_code == 0, result.output
    folder = trained / "export" / fmt
    meta = json.loads((folder / "model.json").read_text())
    assert meta["input_shape"] == [2]
    assert meta["output"] == "probabilities"
    assert meta["class_names"] == ["outer", "inner"]
    code = (
        "import sys, torch\n"
        f"path = {str(folder / meta['file'])!r}\n"
        f"{LOAD[fmt]}\n"
        "x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.3, -0.2]])\n"
        "print(repr(m(x).flatten().tolist()))\n"
        "assert 'nncli' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = torch.tensor(eval(out.stdout.strip()))
    want = reference(trained, torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.3, -0.2]])).flatten()
    torch.testing.assert_close(got, want)


def test_state_dict_export(runner: CliRunner, trained: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", str(trained), "-f", "state_dict", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "model_state_dict.pt", weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    meta = json.loads((tmp_path / "model.json").read_text())
    assert [layer["type"] for layer in meta["layers"]] == ["dense", "gelu", "dense", "sigmoid"]


def test_onnx_model_runs_in_onnxruntime(runner: CliRunner, trained: Path, tmp_path: Path) -> None:
    """Loaded by onnxruntime alone (neither torch nor nncli), any batch size, same outputs."""
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    result = runner.invoke(app, ["export", str(trained), "-f", "onnx", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        str(tmp_path / name) for name in ("model.onnx", "preprocessing.json", "model.json")
    ]  # the files, and none of torch's progress lines
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.json",
        "model.onnx",
        "preprocessing.json",
    ]  # one self-contained file: no model.onnx.data beside it
    points = [[0.0, 0.0], [1.0, 0.0], [0.3, -0.2], [-0.5, 0.5], [0.9, 0.9]]
    code = (
        "import sys, numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(tmp_path / 'model.onnx')!r})\n"
        f"x = np.array({points!r}, dtype=np.float32)\n"
        "print(repr(s.run(None, {'x': x})[0].ravel().tolist()))\n"
        "print(repr(s.run(None, {'x': x[:1]})[0].ravel().tolist()))\n"
        "assert 'torch' not in sys.modules and 'nncli' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    many, one = (torch.tensor(eval(line)) for line in out.stdout.splitlines())
    want = reference(trained, torch.tensor(points)).flatten()
    torch.testing.assert_close(many, want)
    torch.testing.assert_close(one, want[:1])


def test_onnx_without_its_packages_says_so(
    runner: CliRunner, trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name in ("onnx", "onnxscript") else find_spec(name, *args),
    )
    result = runner.invoke(app, ["export", str(trained), "-f", "onnx"])
    assert result.exit_code == 2
    assert "ONNX export needs the onnx and onnxscript package(s)" in result.stderr
    assert "pip install 'nncli[onnx]'" in result.stderr
    assert not (trained / "export" / "onnx" / "model.json").exists()


def test_bad_format_and_not_a_run(runner: CliRunner, trained: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(trained), "-f", "pickle"])
    assert result.exit_code == 2
    assert "unknown export format 'pickle'" in result.stderr
    result = runner.invoke(app, ["export", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a run folder" in result.stderr
