"""`nncli runs`: the run folders of a folder, newest first, with their headline metric."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.runs.folder import STATUSES
from nncli.runs.record import RunInfo, is_run, read_run

RUNS_COLUMNS = ("run", "status", "started", "epochs", "duration_s", "monitor", "best", "best epoch")
UNREADABLE = "unreadable"


def list_runs(folder: Path, statuses: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per run in `folder`, newest first: run, status, started, epochs, duration,
    and the headline: the monitor column (the loss that picked best.pt) and its best value."""
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
        status = info.status or "unknown"
        if wanted and status not in wanted:
            continue
        best = (info.best or {}).get(info.monitor) if info.monitor else None
        # run.json keeps a NaN loss as null
        diverged = status != "diverged" and any(
            k.endswith("_loss") and v is None for k, v in (info.final or {}).items()
        )
        row = {
            "run": path.name,
            "status": f"{status} (diverged)" if diverged else status,
            "started": info.started_at,
            "epochs": info.epochs_done,
            "duration_s": info.duration_s,
            "monitor": info.monitor,
            "best": best.value if best else None,
            "best epoch": best.epoch if best else None,
        }
        started = datetime.fromisoformat(info.started_at) if info.started_at else None
        # unknown start: oldest
        rows.append((started.timestamp() if started else 0.0, path.name, row))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return [r[2] for r in rows]


def _statuses(statuses: Sequence[str] | None) -> set[str]:
    """`--status failed,interrupted --status running` -> a set, each name checked."""
    wanted = {s.strip() for item in statuses or [] for s in item.split(",") if s.strip()}
    known = (*STATUSES, UNREADABLE)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise NncliError(f"unknown status {', '.join(unknown)}; choose from {', '.join(known)}")
    return wanted
