"""Where a run folder is logged besides itself: loggers.json holds, per logger, what a
resumed run needs to continue the same TensorBoard log dir and MLflow run instead of
starting new ones. One reader and one writer; written whole (atomic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nncli.errors import NncliError, first_line
from nncli.runs.files import LOGGERS, write_atomic


def read_links(folder: Path) -> dict[str, dict[str, Any]]:
    """loggers.json of a run folder ({} where there is none); NncliError naming the file
    where it cannot be read or is not an object of objects (never rewritten then)."""
    file = folder / LOGGERS
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise NncliError(
            f"{file}: {first_line(exc)} (delete it to start new logger runs)"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise NncliError(
            f"{file}: should be an object of objects, one per logger (delete it to start new "
            "logger runs)"
        )
    return data


def link(folder: Path, logger: str, values: dict[str, Any]) -> None:
    """Record `values` as `logger`'s entry in `folder`'s loggers.json (the others kept)."""
    links = read_links(folder)
    links[logger] = values
    write_atomic(folder / LOGGERS, json.dumps(links, indent=2) + "\n")
