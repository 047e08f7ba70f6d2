from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import EXPERIMENTS, TINY, Rows, info, train_refused
from sklearn import metrics as skm
from typer.testing import CliRunner

from nncli import data as datamod
from nncli.cli.app import app
from nncli.config import yamlio
from nncli.config.spec import Spec, load_spec, validate
from nncli.engine.fit import fit
from nncli.engine.meter import Meter
from nncli.engine.prepare import prepare
from nncli.engine.state import load_checkpoint
from nncli.engine.task import Task, infer_task
from nncli.errors import NncliError
from nncli.losses import losses
from nncli.runs.record import read_metrics


def spec_of(text: str, *overrides: str) -> Spec:
    return validate(yamlio.loads(text, "t.yaml"), overrides)


def train_rows(spec: Spec) -> list[dict[str, float]]:
    sink = Rows()
    fit(prepare(spec), sink)
    return sink.rows


def test_circles_example_reaches_its_accuracy() -> None:
    rows = train_rows(load_spec(EXPERIMENTS / "circles.yaml"))
    assert len(rows) == 20
    assert rows[-1]["test_accuracy"] >= 0.98
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_same_seed_same_metrics() -> None:
    spec = spec_of(TINY)
    first, second = train_rows(spec), train_rows(spec)
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in first]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in second]
    other = train_rows(spec_of(TINY, "seed=8"))
    assert other[0]["train_loss"] != first[0]["train_loss"]


def test_softmax_classifier_on_blobs() -> None:
    text = """\
data: {source: blobs, n_samples: 600, centers: 4, cluster_std: 1.0, split: {test: 0.25}}
model: {layers: [dense: 4]}
loss: cross_entropy
optimizer: {name: adam, lr: 0.05}
train: {epochs: 30, batch_size: 64, device: cpu}
metrics: [accuracy, precision, recall, f1]
"""
    rows = train_rows(spec_of(text))
    assert rows[-1]["test_accuracy"] >= 0.95
    assert rows[-1]["test_f1"] >= 0.95


def test_xor_needs_a_hidden_layer() -> None:
    neuron = """\
data: {source: xor}
model: {layers: [dense: 1, sigmoid]}
loss: bce
optimizer: {name: adam, lr: 0.1}
train: {epochs: 300, batch_size: 4, device: cpu}
"""
    mlp = neuron.replace("[dense: 1, sigmoid]", "[dense: 8, tanh, dense: 1, sigmoid]")
    assert train_rows(spec_of(neuron))[-1]["train_accuracy"] <= 0.75
    assert train_rows(spec_of(mlp))[-1]["train_accuracy"] == 1.0


def test_full_batch_regression_learns_the_line() -> None:
    rows = train_rows(load_spec(EXPERIMENTS / "linear_regression.yaml"))
    assert rows[-1]["train_r2"] > 0.95
    assert rows[-1]["train_rmse"] < 0.3  # the noise has sd 0.2


def test_max_batches_limits_an_epoch() -> None:
    p = prepare(spec_of(TINY))
    seen: list[int] = []

    class Count(Rows):
        def batch_end(self, epoch: int, batch: int, n_batches: int, loss: torch.Tensor) -> None:
            seen.append(n_batches)

    fit(p, Count(), max_batches=2)
    assert seen == [2, 2] * 3


# --- metrics against scikit-learn --------------------------------------------------------


def meter_results(
    task: Task, out: torch.Tensor, target: torch.Tensor, names: list[str]
) -> dict[str, float]:
    meter = Meter(task, names, torch.device("cpu"))
    half = len(out) // 2  # two batches, to test accumulation
    for sl in (slice(0, half), slice(half, None)):
        meter.update(out[sl], target[sl], torch.tensor(0.5), len(out[sl]))
    return meter.results(meter.totals().tolist())


def test_multiclass_metrics_match_sklearn() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(101, 4, generator=g)
    target = torch.randint(0, 4, (101,), generator=g)
    got = meter_results(
        Task("multiclass", 4, "logits"), logits, target, ["accuracy", "precision", "recall", "f1"]
    )
    pred = logits.argmax(1).numpy()
    y = target.numpy()
    assert got["loss"] == pytest.approx(0.5)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", zero_division=0)
    )
    assert got["recall"] == pytest.approx(
        skm.recall_score(y, pred, average="macro", zero_division=0)
    )
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))


def test_binary_metrics_match_sklearn_for_logits_and_probabilities() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 1, generator=g)
    target = torch.randint(0, 2, (64, 1), generator=g).float()
    y = target.numpy().ravel()
    pred = (logits.numpy().ravel() > 0).astype(int)
    for output, out in (("logits", logits), ("probabilities", logits.sigmoid())):
        got = meter_results(Task("binary", 1, output), out, target, ["accuracy", "f1"])
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))


def test_multilabel_metrics_match_sklearn() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 3, generator=g)
    target = torch.randint(0, 2, (50, 3), generator=g).float()
    got = meter_results(
        Task("multilabel", 3, "logits"), logits, target, ["accuracy", "precision", "f1"]
    )
    y, pred = target.numpy().astype(int), (logits.numpy() > 0).astype(int)
    assert got["accuracy"] == pytest.approx((y == pred).mean())
    assert got["precision"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", zero_division=0)
    )
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))


def test_prepare_keeps_one_copy_of_the_rows() -> None:
    """The splits hold every row; the dataset keeps its layout but not a second copy."""
    spec = validate(yamlio.loads(TINY, "t.yaml"))
    p = prepare(spec)
    raw, indices = datamod.prepare(spec.data, spec.seed, spec.loss_info.target)
    assert p.dataset.x.shape == (0, *raw.x.shape[1:])
    assert len(p.dataset.y) == 0
    assert p.dataset.preprocessing == raw.preprocessing
    for name, idx in indices.items():
        np.testing.assert_array_equal(p.splits[name][0].numpy(), raw.x[idx])


def test_multilabel_scores_per_label_match_sklearn() -> None:
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(60, 4, generator=g)
    target = torch.randint(0, 2, (60, 4), generator=g).float()
    meter = Meter(Task("multilabel", 4, "logits"), ["f1"], torch.device("cpu"))
    meter.update(logits, target, torch.tensor(0.5), len(logits))
    y, pred = target.numpy().astype(int), (logits.numpy() > 0).astype(int)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, pred, average=None, zero_division=0
    )
    got = meter.label_scores()
    assert [s["precision"] for s in got] == pytest.approx(precision.tolist())
    assert [s["recall"] for s in got] == pytest.approx(recall.tolist())
    assert [s["f1"] for s in got] == pytest.approx(f1.tolist())
    assert [s["support"] for s in got] == support.tolist()


def test_regression_metrics_match_sklearn() -> None:
    g = torch.Generator().manual_seed(3)
    target = torch.randn(80, 2, generator=g)
    out = target + 0.3 * torch.randn(80, 2, generator=g)
    got = meter_results(Task("regression", 2, "values"), out, target, ["mae", "rmse", "r2"])
    y, p = target.numpy(), out.numpy()
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-5)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)), rel=1e-5)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-5)


# --- data and task -----------------------------------------------------------------------


def test_stratified_split_keeps_class_balance() -> None:
    params = datamod.datasets.get("blobs").params.model_validate(
        {"source": "blobs", "n_samples": 300, "centers": 3, "split": {"val": 0.2, "test": 0.1}}
    )
    ds = datamod.load(params, 0)
    idx = datamod.split(ds, params.split, 0)  # type: ignore[attr-defined]
    assert {k: len(v) for k, v in idx.items()} == {"train": 210, "val": 60, "test": 30}
    assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(300))
    for name in ("val", "test"):
        assert np.bincount(ds.y[idx[name]]).tolist() == [len(idx[name]) // 3] * 3
    again = datamod.split(ds, params.split, 0)  # type: ignore[attr-defined]
    assert all((again[k] == idx[k]).all() for k in idx)


def test_empty_split_is_a_clear_error() -> None:
    params = datamod.datasets.get("xor").params.model_validate(
        {"source": "xor", "split": {"test": 0.1}}
    )
    ds = datamod.load(params, 0)
    with pytest.raises(NncliError, match="the test split of 4 samples is empty"):
        datamod.split(ds, params.split, 0)  # type: ignore[attr-defined]


def test_generators_are_seeded_and_shaped() -> None:
    for name in ("circles", "moons", "blobs", "linear", "xor", "and", "or"):
        params = datamod.datasets.get(name).params.model_validate({"source": name})
        a, b = datamod.load(params, 5), datamod.load(params, 5)
        assert a.x.dtype == np.float32
        assert (a.x == b.x).all() and (a.y == b.y).all()
    gates = {
        g: datamod.load(datamod.datasets.get(g).params.model_validate({"source": g}), 0)
        for g in ("and", "or", "xor")
    }
    assert gates["and"].y.tolist() == [0, 0, 0, 1]
    assert gates["or"].y.tolist() == [0, 1, 1, 1]
    assert gates["xor"].y.tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(
    ("loss", "classes", "outputs", "kind", "message"),
    [
        ("bce", 2, 1, "binary", None),
        ("bce_with_logits", 2, 1, "binary", None),
        ("cross_entropy", 3, 3, "multiclass", None),
        ("nll", 3, 3, "multiclass", None),
        ("mse", 2, 1, "regression", None),
        ("bce", 3, 1, None, "is for two classes (0/1) but the data has 3"),
        ("bce", 2, 2, None, "end the model with dense: 1"),
        ("cross_entropy", 3, 2, None, "needs one output per class"),
    ],
)
def test_task_follows_loss_data_and_output(
    loss: str, classes: int, outputs: int, kind: str | None, message: str | None
) -> None:
    ds = datamod.Dataset(
        np.zeros((6, 2), np.float32),
        np.arange(6) % classes,
        "classification",
        [str(c) for c in range(classes)],
    )
    info = losses.get(loss).info
    if message is None:
        assert infer_task(ds, loss, info, (outputs,)).kind == kind
    else:
        with pytest.raises(NncliError, match=message.replace("(", r"\(").replace(")", r"\)")):
            infer_task(ds, loss, info, (outputs,))


def test_classification_loss_on_regression_data() -> None:
    ds = datamod.Dataset(np.zeros((4, 1), np.float32), np.zeros((4, 1), np.float32), "regression")
    with pytest.raises(NncliError, match="use loss: mse"):
        infer_task(ds, "cross_entropy", losses.get("cross_entropy").info, (1,))


_ = Path


# one sigmoid neuron whose weight decay (lr * weight_decay = 1e10) multiplies the weights
# by about -1e10 a step: epochs 1 to 3 end finite, epoch 4's only step makes them infinite
# while its loss (of a sigmoid's output) was finite
DECAYING = """\
seed: 3
data: {source: linear, n_samples: 32, weights: [0.5], split: {test: 0.25}}
model: {layers: [dense: 1, sigmoid]}
loss: mse
optimizer: {name: sgd, lr: 1.0, weight_decay: 1.0e10}
train: {epochs: 6, batch_size: 32, device: cpu}
"""


def all_finite(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(all_finite(v) for v in value)
    return True


def test_weights_broken_by_an_epochs_last_step_are_never_checkpointed(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["train", str(write(DECAYING)), "--runs-dir", str(tmp_path / "runs")]
    )
    assert result.exit_code == 3, result.output
    assert (
        "diverged the weights or the optimizer's state became non-finite in epoch 4; the run "
        "stopped and keeps its last finite checkpoint. Try a lower learning rate (it was 1)"
    ) in result.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert result.stdout.strip().splitlines()[-1] == str(folder)
    assert info(folder)["status"] == "diverged"
    assert [r["epoch"] for r in read_metrics(folder)] == [1, 2, 3, 4]  # the row that broke
    last = load_checkpoint(folder / "checkpoints" / "last.pt")
    assert last["epoch"] == 3
    assert all_finite(last["model"]) and all_finite(last["optimizer"])
    best = load_checkpoint(folder / "checkpoints" / "best.pt")
    assert all_finite(best["model"]) and all_finite(best["optimizer"])


@pytest.mark.parametrize(
    ("text", "lr"),
    [  # the first full-batch step makes the weights infinite, and the test split's loss NaN
        (DECAYING.replace("lr: 1.0, weight_decay: 1.0e10", "lr: 1.0e39"), "1e+39"),
        # ... or the test split's probabilities NaN, which BCELoss refuses
        (
            "seed: 3\ndata: {source: blobs, n_samples: 64, centers: 2, split: {test: 0.25}}\n"
            "model: {layers: [dense: 1, sigmoid]}\nloss: bce\n"
            "optimizer: {name: sgd, lr: 2.0e38}\ntrain: {epochs: 3, batch_size: 48, device: cpu}",
            "2e+38",
        ),
    ],
)
def test_a_first_step_that_breaks_the_weights_saves_no_checkpoint(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, text: str, lr: str
) -> None:
    result = runner.invoke(app, ["train", str(write(text)), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 3, result.output
    assert (
        "diverged the weights or the optimizer's state became non-finite in epoch 1; the run "
        f"stopped and keeps its last finite checkpoint. Try a lower learning rate (it was {lr})"
    ) in result.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert info(folder)["status"] == "diverged"
    assert list((folder / "checkpoints").iterdir()) == []


# --- what the course's numbers rest on ------------------------------------------------------


def test_the_fit_figure_is_drawn_in_the_data_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """linear_regression.yaml trains on standardised x; its fit.png still spans x's own
    range, [-0.99, 0.97], with the model's line through the raw points."""
    from nncli.engine.inference import predict
    from nncli.engine.run_figures import write_plots
    from nncli.figures import predictions

    drawn = {}
    real_save = predictions.save

    def spy(fig: Any, out: Path) -> Path:
        drawn[out.name] = fig.axes[0]
        return real_save(fig, out)

    monkeypatch.setattr(predictions, "save", spy)
    p = prepare(load_spec(EXPERIMENTS / "linear_regression.yaml", ["train.epochs=20"]), "cpu")
    result = fit(p, Rows())
    write_plots(tmp_path, p, result)
    ax = drawn["fit.png"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
    raw = np.loadtxt(EXPERIMENTS / "data" / "line.csv", delimiter=",", skiprows=1)
    points = ax.collections[0].get_offsets()
    assert np.allclose(np.sort(points[:, 0]), np.sort(raw[:, 0]), atol=1e-5)
    (curve,) = ax.get_lines()
    assert curve.get_xdata().min() == pytest.approx(raw[:, 0].min() - 0.05 * np.ptp(raw[:, 0]))
    standardised = (curve.get_xdata() - raw[:, 0].mean()) / raw[:, 0].std()
    model_y = predict(p, standardised[:, None].astype(np.float32)).ravel()
    assert np.allclose(curve.get_ydata(), model_y, atol=1e-4)


def test_the_test_split_never_chooses(runner: CliRunner, tmp_path: Path) -> None:
    """best.pt, early stopping and plateaus follow val_loss, else train_loss; a monitor on
    the test split is refused before anything is written."""
    test_only = TINY.replace("split: {val: 0.2, test: 0.2}", "split: {test: 0.2}")
    assert prepare(spec_of(TINY)).monitor == "val_loss"
    assert prepare(spec_of(test_only)).monitor == "train_loss"
    assert prepare(spec_of(test_only, "train.monitor=train_accuracy")).mode == "max"
    with pytest.raises(NncliError) as refused:
        prepare(spec_of(TINY, "train.monitor=test_accuracy"))
    assert str(refused.value) == (
        "train.monitor is 'test_accuracy', but the test split must not choose best.pt, when "
        "to stop early or when to lower the learning rate: its scores would then flatter the "
        "model. Monitor val_accuracy (with data.split.val, e.g. 0.2) or train_accuracy"
    )
    spec = tmp_path / "exp.yaml"
    spec.write_text(test_only, encoding="utf-8")
    stderr = train_refused(runner, spec, tmp_path, "--set", "train.monitor=test_loss")
    assert "train.monitor is 'test_loss', but the test split must not choose" in stderr


def test_the_console_and_run_json_say_what_is_monitored(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "exp.yaml"
    spec.write_text(TINY.replace("split: {val: 0.2, test: 0.2}", "split: {test: 0.2}"))
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == (
        "monitor train_loss (lower is better) picks best.pt (there is no val split: "
        "data.split.val adds one); the test split chooses nothing"
    )
    run = Path(lines[-1])
    record = json.loads((run / "run.json").read_text())
    assert record["monitor"] == "train_loss"
    best = record["best_checkpoint"]
    assert f"; best.pt is epoch {best['epoch']} (train_loss " in lines[-2]

    stopping = tmp_path / "stopping.yaml"
    options = "device: cpu, monitor: val_accuracy, early_stopping: {patience: 5}}"
    stopping.write_text(TINY.replace("device: cpu}", options))
    args = ["train", str(stopping), "--runs-dir", str(tmp_path / "runs"), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    log = (Path(result.stdout.strip()) / "log.txt").read_text().splitlines()
    assert log[1] == (
        "monitor val_accuracy (higher is better) picks best.pt and when to stop early; "
        "the test split chooses nothing"
    )


def test_predict_eval_export_plot_and_show_default_to_last_pt(
    runner: CliRunner, tmp_path: Path
) -> None:
    """One default checkpoint: last.pt, whose metrics run.json and the plots show."""
    spec = tmp_path / "exp.yaml"
    spec.write_text(TINY)
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    run = result.stdout.strip()
    final = json.loads((Path(run) / "run.json").read_text())["final"]
    shown = runner.invoke(app, ["eval", run, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    table = runner.invoke(app, ["eval", run])
    assert table.stdout.splitlines()[0] == f"{run}: the test split, 40 rows, last.pt"
    values = {row["metric"]: row["value"] for row in json.loads(shown.stdout)}
    for metric, value in values.items():
        assert value == pytest.approx(final[f"test_{metric}"], abs=1e-6), metric

    rows = tmp_path / "rows.csv"
    rows.write_text("x1,x2\n0.1,0.2\n0.9,-0.3\n")
    default = runner.invoke(app, ["predict", run, str(rows)])
    last = runner.invoke(app, ["predict", run, str(rows), "--checkpoint", "last"])
    assert default.exit_code == 0, default.output
    assert default.stdout == last.stdout
    weights = runner.invoke(app, ["show", run, "--weights"])
    assert "weights (last.pt):" in weights.stdout.splitlines()
    exported = runner.invoke(app, ["export", run, "--to", "state_dict"])
    assert exported.exit_code == 0, exported.output
    saved = torch.load(Path(run) / "checkpoints" / "last.pt", weights_only=True)["model"]
    folder = Path(run) / "export" / "state_dict"
    exported_state = torch.load(folder / "model_state_dict.pt", weights_only=True)
    assert all(torch.equal(saved[k], exported_state[k]) for k in saved)


def test_generators_take_scikit_learns_defaults() -> None:
    """circles, moons and blobs default to make_circles', make_moons' and make_blobs'
    settings (factor 0.8, no noise, 100 samples, ...), and make the same points."""
    import inspect

    from sklearn import datasets as skd

    def defaults(function: Any) -> dict[str, Any]:
        found = {
            k: v.default
            for k, v in inspect.signature(function).parameters.items()
            if v.default is not inspect.Parameter.empty
        }
        return found

    def ours(name: str) -> dict[str, Any]:
        params = datamod.datasets.get(name).params.model_validate({"source": name})
        return dict(params)

    circles, moons, blobs = ours("circles"), ours("moons"), ours("blobs")
    for mine, theirs in ((circles, skd.make_circles), (moons, skd.make_moons)):
        expected = defaults(theirs)
        assert mine["n_samples"] == expected["n_samples"]
        assert mine["noise"] == (expected["noise"] or 0.0)
    assert circles["factor"] == defaults(skd.make_circles)["factor"] == 0.8
    expected = defaults(skd.make_blobs)
    assert (blobs["n_samples"], blobs["n_features"]) == (100, expected["n_features"])
    assert blobs["cluster_std"] == expected["cluster_std"]
    assert blobs["centers"] == 3  # what make_blobs draws for centers=None
    assert (-blobs["box"], blobs["box"]) == expected["center_box"]

    for name, make in (("circles", skd.make_circles), ("moons", skd.make_moons)):
        params = datamod.datasets.get(name).params.model_validate({"source": name})
        ds = datamod.load(params, 0)
        x, y = make(shuffle=False)
        assert np.allclose(ds.x, x, atol=1e-6), name
        assert ds.y.tolist() == y.tolist(), name


ACCUMULATE = """\
seed: 3
data: {source: make_regression, n_samples: 60, n_features: 3, noise: 0.1, split: {val: 0.2}}
model: {layers: [dense: 4, tanh, dense: 1]}
loss: mse
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
scheduler: {name: onecycle, max_lr: 0.1}
train: {epochs: 2, batch_size: 8, device: cpu, accumulate_batches: 2}
"""


def test_accumulated_batches_step_on_the_mean_of_their_gradients() -> None:
    # 48 training samples: 6 batches of 8, 3 steps of 2 batches; 44: a last step on the
    # one batch of 4 left. onecycle steps once per optimizer step (6 steps over 2 epochs)
    for n_samples in (60, 55):
        spec = spec_of(ACCUMULATE.replace("n_samples: 60", f"n_samples: {n_samples}"))
        p = prepare(spec)
        model = copy.deepcopy(p.model)
        x, y = p.splits["train"]
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, epochs=2, steps_per_epoch=3)
        order = torch.Generator().manual_seed(3)
        for _ in range(2):
            perm = torch.randperm(len(x), generator=order)
            batches = [perm[i : i + 8] for i in range(0, len(x), 8)]
            for group in (batches[i : i + 2] for i in range(0, len(batches), 2)):
                opt.zero_grad()
                for idx in group:
                    loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
                    (loss / len(group)).backward()
                opt.step()
                sched.step()
        rows = Rows()
        fit(p, rows)
        assert rows.rows[-1]["lr"] == pytest.approx(sched.get_last_lr()[0])
        for mine, theirs in zip(p.model.parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-4)  # fused vs plain SGD


def imbalanced(tmp_path: Path, weight: str, loss: str = "cross_entropy") -> str:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [60, 25, 15])
    rows = "\n".join(
        f"{a:.4f},{b:.4f},{c}" for (a, b), c in zip(rng.normal(size=(100, 2)), y, strict=True)
    )
    (tmp_path / "d.csv").write_text("a,b,y\n" + rows + "\n")
    out = "dense: 3" if loss == "cross_entropy" else "dense: 1"
    return f"""\
data: {{source: csv, path: {tmp_path / "d.csv"}, target: y, split: {{val: 0.2}}}}
model: {{layers: [{out}]}}
loss: {{name: {loss}, weight: {weight}}}
train: {{epochs: 1, batch_size: 16, device: cpu}}
"""


def test_balanced_class_weights_come_from_the_train_splits_counts(tmp_path: Path) -> None:
    p = prepare(spec_of(imbalanced(tmp_path, "balanced")))
    x, y = p.splits["train"]
    counts = np.bincount(y.numpy(), minlength=3)
    assert sorted(counts) != [counts[0]] * 3  # imbalanced, so the weights differ
    expected = torch.tensor(len(y) / (3 * counts), dtype=torch.float32)
    torch.testing.assert_close(p.loss_fn.weight, expected)
    out = p.model(x[:16])
    theirs = torch.nn.CrossEntropyLoss(weight=expected)(out, y[:16])
    assert p.loss_fn(out, y[:16]).item() == pytest.approx(theirs.item())


def test_balanced_positive_weight_for_bce(tmp_path: Path) -> None:
    text = imbalanced(tmp_path, "balanced", "bce_with_logits")
    (tmp_path / "d.csv").write_text(
        (tmp_path / "d.csv").read_text().replace(",2\n", ",1\n")  # two classes: 60 / 40
    )
    p = prepare(spec_of(text))
    y = p.splits["train"][1]
    positives = float(y.sum())
    torch.testing.assert_close(
        p.loss_fn.pos_weight, torch.tensor([(len(y) - positives) / positives])
    )


def test_class_weights_of_the_wrong_length_are_refused(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(imbalanced(tmp_path, "[1.0, 2.0]"))
    stderr = train_refused(runner, path, tmp_path)
    assert "loss.weight has 2 values, but the model has 3 classes" in stderr
    assert "give one weight per class (3 values), or weight: balanced" in stderr


class Kept(Rows):
    """Rows, and the last epoch's checkpoint."""

    def epoch_end(
        self, row: Any, state: Callable[[], dict[str, Any]], last: bool, best: bool
    ) -> None:
        super().epoch_end(row, state, last, best)
        self.state = state()


def test_ema_weights_equal_torchs_average_and_score_the_held_out_splits() -> None:
    spec = spec_of(
        ACCUMULATE.replace("accumulate_batches: 2", "ema_decay: 0.9")
        .replace("scheduler: {name: onecycle, max_lr: 0.1}\n", "")
        .replace("epochs: 2", "epochs: 1")
    )
    p = prepare(spec)
    model = copy.deepcopy(p.model)
    x, y = p.splits["train"]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ema = [q.detach().clone() for q in model.parameters()]
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    for step, i in enumerate(range(0, len(x), 8)):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x[perm[i : i + 8]]), y[perm[i : i + 8]]).backward()
        opt.step()
        for e, q in zip(ema, model.parameters(), strict=True):  # the first step copies
            e.copy_(q.detach() if step == 0 else 0.9 * e + 0.1 * q.detach())
    rows = Kept()
    fit(p, rows)
    averaged = list(rows.state["ema"].values())[1:]  # n_averaged, then the weights
    for mine, theirs in zip(averaged, ema, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-4)
    assert rows.state["ema"]["n_averaged"] == step + 1 == p.n_batches
    for mine, theirs in zip(p.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-4)  # trained as before
    xv, yv = p.splits["val"]
    with torch.no_grad():
        weights = dict(zip([n for n, _ in model.named_parameters()], ema, strict=True))
        val = torch.func.functional_call(model, weights, (xv,))
    assert rows.rows[-1]["val_loss"] == pytest.approx(
        torch.nn.functional.mse_loss(val, yv).item(), rel=1e-5
    )


def test_ema_resumes_exactly() -> None:
    text = ACCUMULATE.replace("accumulate_batches: 2", "ema_decay: 0.9").replace(
        "scheduler: {name: onecycle, max_lr: 0.1}\n", ""
    )
    whole = Kept()
    fit(prepare(spec_of(text)), whole)
    first = Kept()
    fit(prepare(spec_of(text.replace("epochs: 2", "epochs: 1"))), first)
    then = Kept()
    fit(prepare(spec_of(text)), then, resume=first.state)
    assert then.state["ema"]["n_averaged"] == whole.state["ema"]["n_averaged"]
    for key, value in whole.state["ema"].items():
        torch.testing.assert_close(then.state["ema"][key], value, rtol=0, atol=0)
    assert then.rows[-1]["val_loss"] == whole.rows[-1]["val_loss"]
