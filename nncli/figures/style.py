"""What every figure shares: the dpi, the colour of each split, the headless backend and
how a PNG is written."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_COLOURS: dict[str, str] = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
SPLIT_LABELS: dict[str, str] = {"train": "train", "val": "validation", "test": "test"}
OTHER_COLOUR = "#7f7f7f"


def _use_agg() -> None:
    """Select the headless Agg backend; call before importing pyplot (no window ever opens)."""
    import matplotlib

    matplotlib.use("Agg")


def _save(fig: Figure, out: Path) -> Path:
    """Lay out, write a PNG at DPI to ``out`` (creating its folder); the caller closes ``fig``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI, format="png")
    return out
