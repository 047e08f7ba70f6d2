"""What the logger tests share: one MLflow tracking store (sqlite, made once: creating its
tables takes seconds), each test in its own working folder (MLflow puts artifacts in
./mlruns), and what TensorBoard's event reader and MLflow's client find of a run.

Nothing is written outside the tests' temporary folders. A test module imports the
fixtures (tracking_store, own_folder_fixture): tests/conftest.py is the one `conftest`
module the tests import from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# MLflow's sqlite store uses what SQLAlchemy 2.1 deprecates; pytest turns warnings into errors
QUIET = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


@pytest.fixture(name="tracking", scope="session")
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import warnings

    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    # MLflow keeps one store per URI, its artifacts in ./mlruns of where it was made
    with pytest.MonkeyPatch.context() as here, warnings.catch_warnings():
        here.chdir(folder)
        warnings.simplefilter("ignore", DeprecationWarning)
        MlflowClient(uri).search_experiments()  # creates the tables
    yield uri


@pytest.fixture(name="own_folder", autouse=True)
def own_folder_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard's own reader finds in `log_dir`: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def images(log_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    return sorted(events.Tags()["images"])


def mlflow_run(tracking: str, run_id: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking).get_run(run_id)


def history(tracking: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(tracking).get_metric_history(run_id, key)]


def artifacts(tracking: str, run_id: str, folder: str | None = None) -> list[str]:
    from mlflow import MlflowClient

    return sorted(a.path for a in MlflowClient(tracking).list_artifacts(run_id, folder))


def links(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "loggers.json").read_text())
    return data
