"""Importing torch and the engine for a process that keeps them for its whole life: with
the garbage collector off, then frozen. torch and torch._dynamo build millions of objects
that live as long as the process; each full collection would walk them again (0.5-0.9 s
of CPU in `nncli train experiments/circles.yaml`), and in a forked child also copy every
page it touches. Torch-free itself."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Sequence


def import_frozen(modules: Sequence[str]) -> None:
    """Import `modules` with the collector off, then freeze what exists (later collections
    skip it). Nothing to do where they are imported already."""
    if all(name in sys.modules for name in modules):
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
