"""The architecture's promises, checked: torch-free packages stay torch-free, a new layer,
data source, metric or logger is one registration away from training, an experiment file
is parsed once, and checkpoints and run.json each have one reader."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nncli.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "pandas", "matplotlib", "sklearn")


@pytest.mark.parametrize(
    "module",
    [
        "nncli.config",
        "nncli.config.spec",
        "nncli.config.lint",
        "nncli.config.sweep",
        "nncli.registry",
        "nncli.layers",
        "nncli.losses",
        "nncli.optim",
        "nncli.metrics",
        "nncli.loggers.base",
        "nncli.catalogue",
        "nncli.cli.app",
    ],
)
def test_torch_free_modules_import_nothing_heavy(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", f"{module} imports {out.strip()}"


def test_validate_and_help_import_nothing_heavy() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from nncli.cli.app import main
        for argv in (["nncli", "--help"], ["nncli", "validate", {str(ROOT / "experiments/circles.yaml")!r}]):
            sys.argv = argv
            try:
                main()
            except SystemExit as exc:
                assert exc.code in (0, None), exc.code
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


# --- one registration away ---------------------------------------------------------------

PLUGIN = '''
"""A plugin: a layer, a data source, a metric and a logger, registered from outside nncli."""
from __future__ import annotations

import json

import numpy as np
from pydantic import Field

from nncli.data import DataParams, Dataset, datasets
from nncli.layers import LayerInfo, layers
from nncli.loggers.base import Logger, LoggerParams, loggers
from nncli.metrics import MetricInfo, metrics
from nncli.registry import Params


class Scale(Params):
    factor: float = Field(gt=0)


@layers.register("scale", params=Scale, positional="factor", info=LayerInfo(keeps_linear=True))
def scale(p, shape):
    """Multiplies its input by a constant."""
    import torch

    class Scaled(torch.nn.Module):
        def forward(self, x):
            return x * p.factor

    return Scaled()


class Stripes(DataParams):
    n_samples: int = Field(default=400, gt=0)


@datasets.register("stripes", params=Stripes)
def stripes(p, seed):
    """Points left or right of x = 0."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (p.n_samples, 2))
    y = (x[:, 0] > 0).astype(np.int64)
    return Dataset(x.astype(np.float32), y, "classification", ["left", "right"])


@metrics.register("error_rate", info=MetricInfo("classification", "min"))
def error_rate(c):
    """share of wrong predictions"""
    return 1 - c.correct / c.total if c.total else 0.0


class Memo(LoggerParams):
    file: str


class MemoLogger(Logger):
    def __init__(self, path):
        self.path = path

    def epoch(self, row, checkpoint, last, best):
        with open(self.path, "a") as f:
            f.write(json.dumps(dict(row)) + "\\n")

    def finish(self, status, result, error):
        with open(self.path, "a") as f:
            f.write(json.dumps({"status": status}) + "\\n")


@loggers.register("memo", params=Memo, positional="file")
def memo(p, folder):
    """Every epoch's row to a JSON-lines file."""
    return MemoLogger(p.file)
'''

PLUGIN_EXPERIMENT = """\
seed: 0
data: {{source: stripes, n_samples: 400, split: {{test: 0.25}}}}
model:
  layers:
    - scale: 3.0
    - dense: 8
    - relu
    - dense: 1
loss: bce_with_logits
optimizer: {{name: adam, lr: 0.05}}
metrics: [accuracy, error_rate]
loggers:
  - memo: {memo}
train: {{epochs: 12, batch_size: 32, device: cpu}}
"""


def _with_plugin(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "plugin.py").write_text(PLUGIN)
    code = "import sys, plugin\nfrom nncli.cli.app import main\nsys.argv = ['nncli', *sys.argv[1:]]\nmain()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        check=False,
    )


@pytest.mark.slow
def test_a_plugin_registers_a_layer_source_metric_and_logger_and_trains(tmp_path: Path) -> None:
    memo = tmp_path / "memo.jsonl"
    experiment = tmp_path / "stripes.yaml"
    experiment.write_text(PLUGIN_EXPERIMENT.format(memo=memo))

    result = _with_plugin(tmp_path, "train", str(experiment), "--runs-dir", "runs", "-q")
    assert result.returncode == 0, result.stderr
    run = tmp_path / Path(result.stdout.strip().splitlines()[-1])
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 12
    last = rows[-1]
    assert float(last["test_accuracy"]) >= 0.95  # a straight boundary: an easy problem
    assert float(last["test_error_rate"]) == pytest.approx(1 - float(last["test_accuracy"]))
    logged = [json.loads(line) for line in memo.read_text().splitlines()]
    assert [r["epoch"] for r in logged[:-1]] == list(range(1, 13))
    assert logged[-1] == {"status": "completed"}
    assert json.loads((run / "run.json").read_text())["status"] == "completed"

    # the new entries are listed, and mistakes in them are located like any other
    listed = _with_plugin(tmp_path, "list", "layers", "--format", "csv")
    assert "scale,,factor (required),layer,Multiplies its input by a constant." in listed.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(PLUGIN_EXPERIMENT.format(memo=memo).replace("scale: 3.0", "scale: -1"))
    refused = _with_plugin(tmp_path, "validate", str(bad))
    assert refused.returncode == 2
    assert f"{bad}:5:7  model.layers.0.scale.factor  Input should be greater than 0, got -1" in (
        refused.stderr
    )


def test_an_unknown_logger_is_refused_with_the_valid_names(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(
        "data: circles\nmodel: {layers: [{dense: 1}]}\nloss: bce_with_logits\n"
        "loggers: [tensorbord]\n"
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "loggers.0  unknown logger 'tensorbord'" in result.stderr


# --- parsed once, read in one place ------------------------------------------------------


def test_train_parses_the_experiment_file_once(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nncli.config import yamlio

    parsed: list[Path] = []
    real = yamlio.load

    def counting(path: Path, source: str | None = None) -> yamlio.Document:
        parsed.append(path)
        return real(path, source)

    monkeypatch.setattr(yamlio, "load", counting)
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    # and the run's config.yaml once, by trained/load (report.html's model summary)
    assert parsed == [tiny, Path(result.stdout.strip()) / "config.yaml"]


def _modules_calling(text: str) -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "nncli").rglob("*.py")
        if any(
            text in line and not line.lstrip().startswith(("#", '"'))
            for line in path.read_text().splitlines()
        )
    )


def test_checkpoints_and_run_json_each_have_one_reader() -> None:
    assert _modules_calling("torch.load(") == ["nncli/engine/state.py"]
    assert _modules_calling("RUN_JSON).read_text(") == ["nncli/runs/record.py"]
