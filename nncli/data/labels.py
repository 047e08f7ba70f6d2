"""Labels and categories as text, the same way at training and at predict time, and the
order classes are numbered in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def label_strings(values: pd.Series[Any]) -> pd.Series[Any]:
    """Labels and categories as text, the same way at training and predict time (see
    label_text), missing values kept missing."""
    import pandas as pd

    return pd.Series([label_text(v) for v in values.tolist()], index=values.index, dtype=object)


def label_text(value: Any) -> str | None:
    """A label or category as text: whole numbers without a decimal point (1.0 -> '1');
    None where it is missing (None or NaN)."""
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sort_labels(labels: list[str]) -> list[str]:
    """Numeric labels in numeric order ('2' before '10'), others alphabetically."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)
