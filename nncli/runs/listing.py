"""`nncli runs`: the run folders of a folder, newest first, with their headline metric."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.runs.files import RUN_JSON
from nncli.runs.folder import STATUSES
from nncli.runs.record import is_run

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
        try:
            info = json.loads((path / RUN_JSON).read_text(encoding="utf-8"))
            if not isinstance(info, dict):
                raise ValueError("not an object")
        except (OSError, ValueError):
            info = {"status": UNREADABLE}
        status = str(info.get("status", "unknown"))
        if wanted and status not in wanted:
            continue
        # run.json may be edited or damaged by hand: every field is checked before use
        monitor = info.get("monitor")
        monitor = monitor if isinstance(monitor, str) else None
        bests = info.get("best")
        best = bests.get(monitor) if monitor and isinstance(bests, dict) else None
        best = best if isinstance(best, dict) else {}
        final = info.get("final")
        final = final if isinstance(final, dict) else {}
        # run.json keeps a NaN loss as null
        diverged = status != "diverged" and any(
            k.endswith("_loss") and v is None for k, v in final.items()
        )
        row = {
            "run": path.name,
            "status": f"{status} (diverged)" if diverged else status,
            "started": _scalar(info.get("started_at")),
            "epochs": _scalar(info.get("epochs_done")),
            "duration_s": _scalar(info.get("duration_s")),
            "monitor": monitor,
            "best": _scalar(best.get("value")),
            "best epoch": _scalar(best.get("epoch")),
        }
        rows.append((_timestamp(info.get("started_at")), path.name, row))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return [r[2] for r in rows]


def _scalar(value: Any) -> Any:
    """A run.json value for a table cell: a plain value as it is, anything else as text."""
    return value if value is None or isinstance(value, str | int | float) else str(value)


def _statuses(statuses: Sequence[str] | None) -> set[str]:
    """`--status failed,interrupted --status running` -> a set, each name checked."""
    wanted = {s.strip() for item in statuses or [] for s in item.split(",") if s.strip()}
    known = (*STATUSES, UNREADABLE)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise NncliError(f"unknown status {', '.join(unknown)}; choose from {', '.join(known)}")
    return wanted


def _timestamp(started: Any) -> float:
    try:
        return datetime.fromisoformat(str(started)).timestamp()
    except ValueError:
        return 0.0  # unknown start: oldest
