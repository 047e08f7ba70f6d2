"""`nncli export-runs`: finished run folders (trained without a logger) replayed into
TensorBoard or MLflow: their config, each metrics.csv row at its epoch, their figures and
how they ended. Every run is read and checked before anything is sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nncli.errors import NncliError, first_line
from nncli.loggers.extras import installed
from nncli.runs.files import PLOTS
from nncli.runs.folder import STATUSES
from nncli.runs.record import UnreadableRun, read_run
from nncli.runs.rundata import RunData, find_runs, live_status

Target = Literal["tensorboard", "mlflow"]
LIBRARY = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


@dataclass(frozen=True)
class Exported:
    """What became of one run: `sent` to `where`, or skipped and why."""

    run: Path
    sent: bool
    where: str


def export_runs(
    paths: Sequence[Path],
    to: Target,
    tracking_uri: str | None = None,
    log_dir: Path | None = None,
    experiment: str | None = None,
) -> list[Exported]:
    """Send the finished runs among `paths` (run folders, or folders of them such as a
    sweep's) to TensorBoard (events in each run folder, or log_dir/<run>) or MLflow (one
    run each; tracking_uri default: MLFLOW_TRACKING_URI, else MLflow's local store).

    NncliError before anything is sent where a path holds no run, a run cannot be read
    (naming the file) or the library is not installed. A run still running is skipped, and
    so is one already there (TensorBoard events in its log dir; an MLflow run tagged with
    its folder), so exporting twice sends each run once.
    """
    if not installed(LIBRARY[to]):
        raise NncliError(f"exporting to {to} needs it installed: pip install 'nncli[{to}]'")
    runs, skipped = find_runs(paths)
    if skipped:
        raise NncliError(
            f"{skipped[0]} is not a run folder nor a folder of run folders (no run.json)"
        )
    checked = [_read(path) for path in runs]  # all of them, before sending any
    results: list[Exported] = []
    for data in checked:
        status = live_status(data.path, data.info.status)
        if status not in STATUSES or status == "running":
            why = "killed: nncli resume continues it" if status == "killed" else status
            results.append(Exported(data.path, False, f"not finished ({why})"))
            continue
        try:
            if to == "tensorboard":
                results.append(_to_tensorboard(data, status, log_dir))
            else:
                results.append(_to_mlflow(data, status, tracking_uri, experiment))
        except NncliError:
            raise
        except Exception as exc:  # the tracking server, the disk: the user's to fix
            raise NncliError(
                f"{data.path} could not be sent to {to}: {first_line(exc)}"
                + (f" ({len(results)} run(s) before it were)" if results else "")
            ) from None
    return results


def _read(path: Path) -> RunData:
    """A run's run.json (strictly: every field as nncli writes it), config.yaml and
    metrics.csv; NncliError naming the file otherwise."""
    try:
        read_run(path)
        return RunData.read(path)
    except UnreadableRun as exc:
        raise NncliError(str(exc)) from None
    except NncliError as exc:
        raise NncliError(f"{path}/{exc}") from None


def _figures(data: RunData) -> list[Path]:
    return sorted((data.path / PLOTS).glob("*.png"))


def _to_tensorboard(data: RunData, status: str, log_dir: Path | None) -> Exported:
    from nncli.loggers.tensorboard import TensorBoardLogger

    logger = TensorBoardLogger(str(log_dir) if log_dir else None, data.path, record=False)
    if any(logger.log_dir.glob("events.out.tfevents.*")):
        return Exported(data.path, False, f"already has TensorBoard events in {logger.log_dir}")
    columns = [c for c in (data.rows[0] if data.rows else {}) if c != "epoch"]
    logger.open(data.config, columns, data.rows)
    logger.artifacts(_figures(data))
    logger.finish(status, None, data.info.error)
    return Exported(data.path, True, str(logger.log_dir))


def _to_mlflow(
    data: RunData, status: str, tracking_uri: str | None, experiment: str | None
) -> Exported:
    from nncli.loggers.mlflow import MlflowLogger, MlflowParams

    params = MlflowParams(tracking_uri=tracking_uri, experiment=experiment)
    logger = MlflowLogger(params, data.path, record=False)
    name = str(data.config.get("name") or data.info.name or data.path.name)
    there = logger.find(experiment or name)
    if there is not None:
        return Exported(data.path, False, f"already in MLflow as run {there} at {logger.uri}")
    logger.open(name, data.config, data.rows)
    logger.artifacts(_figures(data))
    logger.finish(status, None, data.info.error)
    return Exported(data.path, True, f"MLflow run {logger.run_id} at {logger.uri}")
