"""`nncli runs`: the run folders of a folder, newest first, with their headline metric."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.runs.folder import STATUSES
from nncli.runs.record import RunInfo, is_run, read_run
from nncli.runs.rundata import KILLED, live_status

RUNS_COLUMNS = (
    "run",
    "status",
    "started",
    "epochs",
    "duration_s",
    "monitor",
    "best",
    "best epoch",
    "metric",
    "metric best",
)
UNREADABLE = "unreadable"


def list_runs(folder: Path, statuses: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per run in `folder`, newest first: run, status (`killed` for a running run
    whose trainer died; `(smoke)` marks a --smoke run), started, epochs, duration, the
    monitor column (the loss that picked best.pt) and its best value and epoch, and the
    main metric (see _main_metric) with its best value."""
    if not folder.exists():
        raise NncliError(f"{folder} does not exist; train a run first or name its runs folder")
    if not folder.is_dir():
        raise NncliError(f"{folder} is not a folder; name the folder that holds run folders")
    wanted = _statuses(statuses)
    entries = [folder] if is_run(folder) else [p for p in folder.iterdir() if is_run(p)]
    rows: list[tuple[float, str, dict[str, Any]]] = []
    for path in entries:
        try:  # lenient: a field edited to the wrong type shows blank
            info = read_run(path, strict=False)
        except NncliError:
            info = RunInfo(path, {}, status=UNREADABLE)
        status = live_status(path, info.status)
        if wanted and status not in wanted:
            continue
        best = (info.best or {}).get(info.monitor) if info.monitor else None
        # run.json keeps a NaN loss as null
        diverged = status != "diverged" and any(
            k.endswith("_loss") and v is None for k, v in (info.final or {}).items()
        )
        marks = [m for m, on in (("diverged", diverged), ("smoke", info.smoke)) if on]
        metric = _main_metric(info)
        row = {
            "run": path.name,
            "status": f"{status} ({', '.join(marks)})" if marks else status,
            "started": info.started_at,
            "epochs": info.epochs_done,
            "duration_s": info.duration_s,
            "monitor": info.monitor,
            "best": best.value if best else None,
            "best epoch": best.epoch if best else None,
            "metric": metric,
            "metric best": (info.best or {})[metric].value if metric else None,
        }
        started = datetime.fromisoformat(info.started_at) if info.started_at else None
        # unknown start: oldest
        rows.append((started.timestamp() if started else 0.0, path.name, row))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return [r[2] for r in rows]


def _main_metric(info: RunInfo) -> str | None:
    """The metric a run is judged by: the monitored column when it is a metric, else the
    first metric of the held-out split it has (test before val: the test split judges,
    it never chooses), else of the monitored split (`train_loss` -> `train_accuracy`)."""
    best, monitor = info.best or {}, info.monitor
    if monitor is None or monitor not in best:
        return None
    if not monitor.endswith("_loss"):
        return monitor
    for split in ("test", "val", monitor.split("_", 1)[0]):
        found = next(
            (k for k in best if k.startswith(f"{split}_") and not k.endswith("_loss")), None
        )
        if found is not None:
            return found
    return None


def _statuses(statuses: Sequence[str] | None) -> set[str]:
    """`--status failed,interrupted --status running` -> a set, each name checked."""
    wanted = {s.strip() for item in statuses or [] for s in item.split(",") if s.strip()}
    known = (*STATUSES, KILLED, UNREADABLE)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise NncliError(f"unknown status {', '.join(unknown)}; choose from {', '.join(known)}")
    return wanted
