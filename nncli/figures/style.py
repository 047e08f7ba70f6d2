"""What every figure shares: the dpi, the colour of each split, a headless figure of its
own (no pyplot) and writing it as a PNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150
# zlib level 1: 40% less time writing a PNG (half of a figure's cost), files 30% larger
FAST_PNG = {"compress_level": 1}
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_COLOURS: dict[str, str] = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
SPLIT_LABELS: dict[str, str] = {"train": "train", "val": "validation", "test": "test"}
OTHER_COLOUR = "#7f7f7f"


def use_agg() -> None:
    """Select the headless Agg backend; call before importing pyplot (no window ever opens).
    nncli's own figures need not: `figure` draws on an Agg canvas without pyplot."""
    import matplotlib

    matplotlib.use("Agg")


@contextmanager
def figure(
    figsize: tuple[float, float], grid: tuple[int, int] | None = None
) -> Iterator[tuple[Figure, Any]]:
    """A headless figure of ``figsize`` inches and its axes; with ``grid`` (rows, columns),
    the axes are an array of that shape. It is drawn on an Agg canvas of its own, without
    pyplot: no window, no global list of figures to close, and not pyplot's import (0.15 s
    of a run's start-up)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes: Any = fig.subplots() if grid is None else fig.subplots(*grid, squeeze=False)
    yield fig, axes


def save(fig: Figure, out: Path, tight_box: bool = False) -> Path:
    """Lay out, write a PNG at DPI to ``out`` (creating its folder), whole or not at all
    (runs.files.WriteError names it). ``tight_box`` crops the image
    to what is drawn (a legend beside the axes) instead of laying the axes out."""
    import io

    from nncli.runs.files import make_folder, write_bytes_atomic

    make_folder(out.parent)
    png = io.BytesIO()  # drawn in memory: a full disk cannot leave half a PNG
    if tight_box:
        fig.savefig(png, dpi=DPI, format="png", bbox_inches="tight", pil_kwargs=FAST_PNG)
    else:
        fig.tight_layout()
        fig.savefig(png, dpi=DPI, format="png", pil_kwargs=FAST_PNG)
    write_bytes_atomic(out, png.getvalue())
    return out
