"""`nncli export` of sequence models: TorchScript of an LSTM and of a transformer encoder
gives the run's outputs, and a layer a format cannot carry is refused, named, unwritten."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nncli.cli.app import app

LSTM = """\
seed: 0
data: {source: sines, n_steps: 300, window: 10, horizon: 1}
model:
  layers: [lstm: {hidden: 8}, dense: 1]
loss: mse
train: {epochs: 2, batch_size: 32, device: cpu}
"""
TRANSFORMER = """\
seed: 0
data: {source: text_sentiment, n_samples: 200}
model:
  layers:
    - embedding: 8
    - positional_encoding
    - transformer_encoder: {heads: 2, feedforward: 16, layers: 2, causal: true}
    - global_avg_pool: {over: time}
    - dense: 2
loss: cross_entropy
train: {epochs: 2, batch_size: 32, device: cpu}
"""


def train(runner: CliRunner, tmp_path: Path, text: str, name: str) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text)
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def inputs(kind: str) -> torch.Tensor:
    """A batch with padding at the end of some sequences (all-zero steps, id 0)."""
    gen = torch.Generator().manual_seed(1)
    if kind == "lstm":
        x = torch.randn(5, 10, 1, generator=gen)
        x[1, 6:] = 0.0
    else:
        x = torch.randint(1, 20, (5, 12), generator=gen).float()
        x[0, 7:], x[3, 2:] = 0.0, 0.0
    return x


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_torchscript_of_a_sequence_model_gives_the_runs_outputs(
    runner: CliRunner, tmp_path: Path, kind: str
) -> None:
    from nncli.trained.load import load_run

    run = train(runner, tmp_path, LSTM if kind == "lstm" else TRANSFORMER, kind)
    out = tmp_path / "ts"
    result = runner.invoke(app, ["export", str(run), "--format", "torchscript", "--out", str(out)])
    assert result.exit_code == 0, result.output
    x = inputs(kind)
    t = load_run(run)
    with torch.no_grad():
        want = t.model(x)
    if kind == "lstm":  # a standardised series: the file answers in the target's own units
        assert t.pre.target_std is not None and t.pre.target_mean is not None
        want = want * t.pre.target_std[0] + t.pre.target_mean[0]
    torch.save(x, tmp_path / "x.pt")
    code = (  # loaded where nncli cannot be imported: the file carries the whole model
        "import json, sys, torch\n"
        "sys.modules['nncli'] = None\n"
        f"m = torch.jit.load({str(out / 'model.torchscript.pt')!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        "print(json.dumps([m(x).tolist(), m(x[:2]).tolist()]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    whole, two = (torch.tensor(v) for v in json.loads(done.stdout))
    torch.testing.assert_close(whole, want)
    torch.testing.assert_close(two, want[:2])  # another batch size than the trace's


PLUGIN = '''\
import json, sys
from pathlib import Path

from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.layers import LayerInfo, layers
from nncli.registry import NoParams


@layers.register("gate", params=NoParams, info=LayerInfo())
def gate(p, shape):
    """Halves its input where any value of the batch is positive: a branch on values."""
    import torch

    class Gate(torch.nn.Module):
        def forward(self, x):
            return x * 0.5 if bool((x > 0).any()) else x

    return Gate()


runner, out = CliRunner(), Path(sys.argv[1])
spec = out / "gate.yaml"
spec.write_text(
    "seed: 0\\ndata: {source: circles, n_samples: 64}\\n"
    "model: {layers: [gate, dense: 4, tanh, dense: 1, sigmoid]}\\nloss: bce\\n"
    "train: {epochs: 1, batch_size: 16, device: cpu}\\n"
)
trained = runner.invoke(app, ["train", str(spec), "--runs-dir", str(out / "runs"), "-q"])
assert trained.exit_code == 0, trained.output
run = trained.stdout.strip()
said = {"run": run}
for fmt in ("torchscript", "exported"):
    done = runner.invoke(app, ["export", run, "--format", fmt, "--out", str(out / fmt)])
    said[fmt] = [done.exit_code, done.stdout, done.stderr]
print(json.dumps(said))
'''


def test_a_layer_a_format_cannot_carry_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    # a trace follows one path through a branch on values: the TorchScript file answered
    # for every input as for the all-zero sample it was traced with
    import os

    from conftest import ROOT

    (tmp_path / "plugin.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, str(tmp_path / "plugin.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    said = json.loads(done.stdout)
    run = said["run"]
    others = "Export another format ({}, or state_dict with the layers in config.yaml)"
    assert said["torchscript"] == [
        2,
        "",
        f"error {run}: the model cannot be exported as torchscript at model.layers.0 (gate): "
        "its file would give other outputs than the model; nothing was written. "
        f"{others.format('exported, onnx')}\n",
    ]
    code, stdout, stderr = said["exported"]
    assert (code, stdout) == (2, "")
    assert stderr.startswith(
        f"error {run}: the model cannot be exported as exported at model.layers.0 (gate): "
    ), stderr
    assert stderr.endswith(f"; nothing was written. {others.format('torchscript, onnx')}\n")
    assert "Traceback" not in stderr
    assert not (tmp_path / "torchscript").exists()
    assert not (tmp_path / "exported").exists()


def test_onnx_of_a_standardised_timeseries_answers_in_the_targets_units_as_predict(
    runner: CliRunner, tmp_path: Path
) -> None:
    # the exported graph gave standardised values, predict the target's own units
    import numpy as np
    import pandas as pd

    from nncli.trained.load import load_run
    from nncli.trained.rows import sequence_rows

    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    sines = LSTM.replace("window: 10", "window: 10, periods: [25.0], noise: 0.0")
    run = train(runner, tmp_path, sines, "lstm")
    t = load_run(run)
    assert t.pre.target_std is not None and t.pre.target_mean is not None
    assert abs(t.pre.target_std[0] - 1.0) > 0.2  # (so that units differ)
    history = tmp_path / "history.csv"
    steps = np.arange(60)
    pd.DataFrame({"y": 3.0 * np.sin(2 * np.pi * steps / 25) + 5.0}).to_csv(history, index=False)
    predicted = runner.invoke(
        app, ["predict", str(run), str(history), "--out", str(tmp_path / "p")]
    )
    assert predicted.exit_code == 0, predicted.output
    want = pd.read_csv(tmp_path / "p")["prediction"].to_numpy()
    assert len(want) == 51  # a forecast from each row that ends a window of 10

    result = runner.invoke(app, ["export", str(run), "-f", "onnx", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    sequences = sequence_rows(t, history, "input", targets=False)
    assert sequences is not None
    np.save(tmp_path / "x.npy", sequences[1])  # the windows, standardised as the run's inputs
    code = (
        "import json, numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(tmp_path / 'o' / 'model.onnx')!r})\n"
        f"print(json.dumps(s.run(None, {{'x': np.load({str(tmp_path / 'x.npy')!r})}})[0].tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = np.asarray(json.loads(out.stdout))[:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    meta = json.loads((tmp_path / "o" / "model.json").read_text())
    assert meta["target_scale"] == {
        "targets": ["y"],
        "mean": t.pre.target_mean,
        "std": t.pre.target_std,
        "in_model": True,
        "note": "the model learned standardised targets; its last step here is output * std "
        "+ mean: it answers in the targets' units",
    }
