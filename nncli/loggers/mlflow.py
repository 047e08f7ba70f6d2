"""The `mlflow` logger: an MLflow run per run folder, with the flattened config as params,
each epoch's row as metrics at the epoch's step, the config and figures as artifacts, the
run folder and checkpoint paths as tags, and how the run ended as its status. Registered
without importing MLflow; its builder imports it."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from nncli.loggers.base import Checkpoint, Logger, loggers
from nncli.loggers.extras import ExtraParams
from nncli.loggers.links import link, read_links
from nncli.runs.files import BEST, CHECKPOINTS, CONFIG, LAST

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from nncli.engine.fit import FitResult
    from nncli.engine.prepare import Prepared
    from nncli.runs.folder import Run

# MLflow's status for each way a run ends
STATUS = {
    "completed": "FINISHED",
    "interrupted": "KILLED",
    "failed": "FAILED",
    "diverged": "FAILED",
}
FOLDER_TAG = "nncli.run_folder"  # the run folder's absolute path: export-runs skips it then


class MlflowParams(ExtraParams):
    """An MLflow run (pip install 'nncli[mlflow]')."""

    library: ClassVar[str] = "mlflow"
    extra: ClassVar[str] = "mlflow"
    tracking_uri: str | None = Field(
        default=None,
        description="where MLflow keeps runs (http://..., sqlite:///mlflow.db); default: "
        "MLFLOW_TRACKING_URI, else MLflow's local store",
    )
    experiment: str | None = Field(default=None, description="default: the run's name")
    log_checkpoints: bool = Field(
        default=False, description="also upload best.pt and last.pt as artifacts"
    )


def params(config: Mapping[str, Any]) -> dict[str, str]:
    """The config's dotted keys (as `nncli compare` shows them) and values as MLflow
    params: text as it is, anything else as JSON, cut to the length MLflow keeps."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    from nncli.runs.record import flatten

    flat = flatten(dict(config))
    texts = {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items()}
    return {k: v[:MAX_PARAM_VAL_LENGTH] for k, v in texts.items()}


class MlflowLogger(Logger):
    """One MLflow run for a run folder; a resumed run continues it (its id is kept in the
    run folder's loggers.json)."""

    def __init__(self, p: MlflowParams, folder: Path, record: bool = True) -> None:
        import mlflow

        self.folder, self.log_checkpoints = folder, p.log_checkpoints
        self.record = record  # the run id in loggers.json
        linked = read_links(folder).get("mlflow", {})
        uri = linked.get("tracking_uri") or p.tracking_uri or mlflow.get_tracking_uri()
        self.client: MlflowClient = mlflow.MlflowClient(uri)
        self.uri = str(uri)
        self.experiment = p.experiment
        self.run_id: str | None = linked.get("run_id")
        if self.run_id is not None:
            self.client.get_run(self.run_id)  # still there: else this logger is left out

    # --- the Logger interface ---------------------------------------------------------

    def start(self, run: Run, p: Prepared, resumed_after: int) -> None:
        from nncli.config.spec import resolved
        from nncli.runs.record import read_metrics

        assert p.spec.name is not None  # load_spec fills it
        done = read_metrics(run.path) if resumed_after else []  # as the run folder kept them
        self.open(p.spec.name, resolved(p.spec), done)

    def epoch(
        self, row: Mapping[str, float], checkpoint: Checkpoint, last: bool, best: bool
    ) -> None:
        self.metrics([row])

    def artifacts(self, paths: Sequence[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self._id(), str(path), "plots")

    def finish(self, status: str, result: FitResult | None, error: str | None) -> None:
        run_id = self._id()
        tags = {"nncli.status": status}
        for name in (BEST, LAST):
            path = self.folder / CHECKPOINTS / name
            if path.is_file():
                tags[f"nncli.checkpoint.{path.stem}"] = str(path.resolve())
                if self.log_checkpoints:
                    self.client.log_artifact(run_id, str(path), CHECKPOINTS)
        if error:
            tags["nncli.error"] = error[:5000]
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        self.client.set_terminated(run_id, STATUS.get(status, "FAILED"))

    # --- what export-runs replays too ---------------------------------------------------

    def open(
        self, name: str, config: Mapping[str, Any], done: Sequence[Mapping[str, float]] = ()
    ) -> None:
        """Create the MLflow run (or mark the linked one running again, after a resume),
        with the rows of the epochs `done` that it lacks (a resumed run's, as metrics.csv
        keeps them: one interrupted before this logger saw it is sent now)."""
        from mlflow.entities import Param

        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, "nncli.resumed_after", str(len(done)))
            column = next((c for row in done for c in row if c != "epoch"), None)
            if column is not None:
                steps = {m.step for m in self.client.get_metric_history(self.run_id, column)}
                done = [row for row in done if int(row["epoch"]) not in steps]
            # a param cannot change in MLflow: one that did (train.epochs, extended by
            # resume --epochs) keeps its first value; the run's config.yaml says the last
            logged = self.client.get_run(self.run_id).data.params
            new = {k: v for k, v in params(config).items() if k not in logged}
        else:
            experiment = self._experiment(self.experiment or name)
            tags = {FOLDER_TAG: str(self.folder.resolve()), "nncli.name": name}
            created = self.client.create_run(experiment, tags=tags, run_name=self.folder.name)
            self.run_id = created.info.run_id
            if self.record:
                link(self.folder, "mlflow", {"tracking_uri": self.uri, "run_id": self.run_id})
            new = params(config)
            if (self.folder / CONFIG).is_file():
                self.client.log_artifact(self.run_id, str(self.folder / CONFIG))
        items = [Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), 100):  # MLflow takes 100 params a call
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        self.metrics(done)

    def metrics(self, rows: Sequence[Mapping[str, float]]) -> None:
        """Epoch rows: each column (but epoch) a metric at the epoch's step."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        found = [
            Metric(column, float(value), stamp, int(row["epoch"]))
            for row in rows
            for column, value in row.items()
            if column != "epoch"
        ]
        for i in range(0, len(found), 1000):  # MLflow takes 1000 metrics a call
            self.client.log_batch(self._id(), metrics=found[i : i + 1000])

    def find(self, experiment: str) -> str | None:
        """The id of the MLflow run of this run folder (linked, or tagged with the folder
        in `experiment`), or None where it has none yet."""
        if self.run_id is not None:
            return self.run_id
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return None
        folder = str(self.folder.resolve()).replace("\\", "\\\\").replace("'", "\\'")
        runs = self.client.search_runs(
            [found.experiment_id], f"tags.`{FOLDER_TAG}` = '{folder}'", max_results=1
        )
        return str(runs[0].info.run_id) if runs else None

    def _experiment(self, name: str) -> str:
        """The id of the experiment `name`, created where it does not exist yet."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception:  # another run (a sweep's trial) created it meanwhile
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def _id(self) -> str:
        if self.run_id is None:
            raise RuntimeError("the MLflow run is not started")
        return self.run_id


@loggers.register("mlflow", params=MlflowParams, imports=("mlflow",))
def mlflow_run(params: MlflowParams, run_folder: Path) -> Logger:
    """An MLflow run: the flattened config as params, per-epoch metrics with their step, the
    figures and config as artifacts, checkpoint paths as tags, and the final status."""
    return MlflowLogger(params, run_folder)
