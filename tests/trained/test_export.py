from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
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
    root = ROOT
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
    assert not (trained / "export" / "onnx").exists()  # nothing written, not even the folder


def test_bad_format_and_not_a_run(runner: CliRunner, trained: Path, tmp_path: Path) -> None:
    from nncli.errors import NncliError
    from nncli.trained.export import export_run

    for option in ("--to", "--format", "-f"):
        result = runner.invoke(app, ["export", str(trained), option, "pickle"])
        assert result.exit_code == 2
        assert result.stderr.splitlines()[-1] == (
            "Error: Invalid value for '--to' / '--format' / '-f': Value error, 'pickle' is not "
            "one of 'state_dict', 'exported', 'torchscript', 'onnx'."
        )
    with pytest.raises(NncliError, match="unknown export format 'pickle'"):
        export_run(trained, "pickle")  # type: ignore[arg-type]
    result = runner.invoke(app, ["export", str(trained), "--checkpoint", "final"])
    assert result.exit_code == 2
    assert "Invalid value for '--checkpoint': Value error, 'final' is not one of" in result.stderr
    result = runner.invoke(app, ["export", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a run folder" in result.stderr


# --- a run's damaged parts are named by the one loader (nncli.trained.load) -----------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def reshaped(run: Path, key: str = "0.weight", rows: int = 5) -> str:
    """Both checkpoints with `key` cut to its first `rows` rows; torch's shape of the model's."""
    for name in ("best.pt", "last.pt"):
        path = run / "checkpoints" / name
        state = torch.load(path, weights_only=True)
        want = "x".join(map(str, state["model"][key].shape))
        state["model"][key] = state["model"][key][:rows].clone()
        torch.save(state, path)
    return want


def test_wrong_shaped_weights_are_named_by_every_command(
    runner: CliRunner, trained: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("export"))
    want = reshaped(run)
    np.savez(tmp_path / "new.npz", x=np.zeros((3, 2), np.float32))
    before = snapshot(run)
    commands = {
        "export": (["export", str(run)], "last.pt"),
        "export --to torchscript": (["export", str(run), "--to", "torchscript"], "last.pt"),
        "export --checkpoint best": (["export", str(run), "--checkpoint", "best"], "best.pt"),
        "predict": (["predict", str(run), str(tmp_path / "new.npz")], "last.pt"),
        "eval": (["eval", str(run)], "last.pt"),
        "show": (["show", str(run)], "last.pt"),
        "plot": (["plot", str(run)], "last.pt"),
    }
    for command, (args, name) in commands.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr == (
            f"error {run / 'checkpoints' / name} does not fit the model of {run / 'config.yaml'} "
            f"(was config.yaml edited?): '0.weight' is 5x2 in the checkpoint, {want} in the "
            "model\n"
        ), command
        assert snapshot(run) == before, command


def test_the_loader_names_missing_extra_and_unreadable_weights(
    trained: Path, tmp_path: Path
) -> None:
    from nncli.errors import NncliError
    from nncli.trained.load import load_run

    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("export"))
    path = run / "checkpoints" / "last.pt"
    original = torch.load(path, weights_only=True)
    misfit = f"{path} does not fit the model of {run / 'config.yaml'} (was config.yaml edited?)"
    cases = {
        "missing": (
            {k: v for k, v in original["model"].items() if k != "2.bias"},
            f"{misfit}: it has no tensor '2.bias'",
        ),
        "extra": (
            {**original["model"], "9.weight": torch.zeros(1)},
            f"{misfit}: it has a tensor '9.weight' that the model lacks",
        ),
        "not a tensor": (
            {**original["model"], "0.bias": [1.0]},
            f"{misfit}: its '0.bias' is not a tensor",
        ),
        "no weights": (
            [1, 2],
            f"{path} is not an nncli checkpoint (its 'model' entry holds no weights)",
        ),
    }
    for case, (weights, message) in cases.items():
        torch.save({**original, "model": weights}, path)
        with pytest.raises(NncliError) as caught:
            load_run(run, "last")
        assert str(caught.value) == message, case
    torch.save({k: v for k, v in original.items() if k != "model"}, path)
    with pytest.raises(NncliError, match="no 'model' entry"):
        load_run(run, "last")
    path.unlink()
    with pytest.raises(NncliError, match=f"{path} does not exist"):
        load_run(run, "last")
    (run / "config.yaml").write_text("model: {layers: []}\n")
    with pytest.raises(NncliError, match=r"config\.yaml"):
        load_run(run, "last")
