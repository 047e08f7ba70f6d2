"""Loggers whose library is an optional extra (`pip install 'nncli[mlflow]'`): a missing
library is a validation error of the file, at the entry, before any run folder exists.

Torch-free and light: the check finds the library without importing it."""

from __future__ import annotations

from importlib.util import find_spec
from typing import ClassVar

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from nncli.loggers.base import LoggerParams


def installed(module: str) -> bool:
    """Whether the top-level `module` can be imported (it is not imported here)."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module without a spec
        return False


class ExtraParams(LoggerParams):
    """Base of a logger entry that needs the library of an extra."""

    library: ClassVar[str]  # the top-level module its builder imports
    extra: ClassVar[str]  # nncli's extra that installs it

    @model_validator(mode="after")
    def _library_installed(self) -> ExtraParams:
        if not installed(self.library):
            raise PydanticCustomError(
                "missing_extra",
                "this logger needs {library}, which is not installed "
                "(pip install 'nncli[{extra}]')",
                {"library": self.library, "extra": self.extra},
            )
        return self
