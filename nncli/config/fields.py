"""Field types that several sections of the experiment file share: names, devices and
`split_metric` columns, with the help shown when a value does not fit."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from nncli.metrics import unknown_metric

DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"


MONITOR_PATTERN = r"^(train|val|test)_[a-z][a-z0-9_]*$"  # split_metric; the metric is checked


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}$"


PATTERN_HELP = {
    NAME_PATTERN: "a run name holds letters, digits and _ . + - only (no path separators)",
    DEVICE_PATTERN: "expected auto, cpu, cuda, cuda:N or mps",
    MONITOR_PATTERN: "expected a split and a metric, like val_loss or val_accuracy",
}


def _split_metric(value: Any) -> Any:
    """`val_accuracy`: a split and a registered metric (or loss), checked by name."""
    if isinstance(value, str) and re.match(MONITOR_PATTERN, value):
        exc = unknown_metric(value)
        if exc is not None:
            raise PydanticCustomError(
                "unknown_name", "{reason} ({hint})", {"reason": exc.reason, "hint": exc.hint}
            )
    return value


_SplitMetricText = Annotated[str, Field(pattern=MONITOR_PATTERN)]
SplitMetric = Annotated[
    _SplitMetricText, BeforeValidator(_split_metric, json_schema_input_type=_SplitMetricText)
]
