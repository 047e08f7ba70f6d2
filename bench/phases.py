"""`nncli train ...` with timestamps at its phase boundaries (run by bench/processes.py).

    python bench/measure.py OUT python bench/phases.py experiments/circles.yaml --quiet ...

The marks, in seconds since bench/measure.py started the process ($NNCLI_BENCH_T0), go
as JSON to the file named by $NNCLI_BENCH_PHASES. The CLI itself is unchanged:
the engine's functions are wrapped, not replaced.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

T0 = float(os.environ["NNCLI_BENCH_T0"])
marks: dict[str, float] = {"python": time.time() - T0}
writes = [0.0]  # seconds spent in the sink writing rows and checkpoints during fit

import nncli.cli.app  # noqa: E402  (typer, rich, the CLI)

marks["cli_imported"] = time.time() - T0

from nncli.cli.train import _import_engine  # noqa: E402

_import_engine()  # as `nncli train` imports torch and the engine (their objects frozen)
from nncli.engine import experiment  # noqa: E402
from nncli.loggers.run_folder import RunFolderLogger  # noqa: E402

marks["engine_imported"] = time.time() - T0


def around(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        marks[f"{name}_start"] = time.time() - T0
        try:
            return fn(*args, **kwargs)
        finally:
            marks[f"{name}_end"] = time.time() - T0

    return wrapper


def counted(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            writes[0] += time.perf_counter() - started

    return wrapper


experiment.prepare = around("prepare", experiment.prepare)
experiment.fit = around("fit", experiment.fit)
experiment.write_plots = around("plots", experiment.write_plots)
RunFolderLogger.epoch = counted(RunFolderLogger.epoch)  # type: ignore[method-assign]


def record() -> None:
    """As the command ends (run ends the process itself, once the atexit handlers ran)."""
    marks["main_end"] = time.time() - T0
    marks["sink_writes"] = writes[0]
    Path(os.environ["NNCLI_BENCH_PHASES"]).write_text(json.dumps(marks), encoding="utf-8")


atexit.register(record)
sys.argv = ["nncli", "train", *sys.argv[1:]]
nncli.cli.app.run()  # as the nncli command does
