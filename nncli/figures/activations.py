"""The activation gallery: every registered activation and its derivative, one panel
each (`nncli plot activations`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nncli.figures.style import OTHER_COLOUR, SPLIT_COLOURS, figure, save
from nncli.registry import Params

ACTIVATIONS_COLUMNS = 4
ACTIVATION_PANEL: tuple[float, float] = (2.6, 2.2)  # inches per activation
FUNCTION_COLOUR = SPLIT_COLOURS["train"]
DERIVATIVE_COLOUR = "#d62728"


@dataclass(frozen=True)
class Curve:
    """One activation over a range of inputs, with its derivative (NaN where undefined)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    dy: np.ndarray
    note: str = ""  # how a vector-valued activation was made a curve


def activation_curves(
    chosen: Sequence[Params] | None = None, lo: float = -5.0, hi: float = 5.0, n: int = 1001
) -> list[Curve]:
    """Every registered activation with default parameters (or the `chosen` ones, each a
    layer's parameters), on [lo, hi].

    Element-wise activations are evaluated on x. A vector-valued one (softmax) is shown as
    its first output for the input (x, 0). Derivatives are central differences of the
    curve, so they show what the function does (step: 0) rather than the straight-through
    gradient nncli trains step with; they are NaN at a jump, where none exists.
    """
    import torch

    from nncli.layers import activations, layers

    if chosen is None:
        chosen = [layers.get(name).params() for name in activations()]
    x = np.linspace(lo, hi, n)
    pair = torch.zeros(n, 2, dtype=torch.float64)
    pair[:, 0] = torch.as_tensor(x)
    curves = []
    for params in chosen:
        entry = layers.get(str(getattr(params, layers.key)))
        module = entry.build(params, (2,)).double().eval()
        with torch.no_grad():
            y = module(pair)[:, 0].numpy()
            alone = module(pair[:, :1])[:, 0].numpy()
        note = "" if np.allclose(y, alone) else "first output, input (x, 0)"
        dy = np.gradient(y, x)
        # a jump between neighbouring samples is a discontinuity: no derivative there
        jumps = np.flatnonzero(np.abs(np.diff(y)) > 25 * (x[1] - x[0]))
        dy[jumps] = np.nan
        dy[jumps + 1] = np.nan
        curves.append(Curve(_label(entry.name, params), x, y, dy, note))
    return curves


def _label(name: str, params: Params) -> str:
    """`leaky_relu (negative_slope=0.2)`: the name, and the parameters set off their defaults."""
    changed = params.model_dump(exclude_defaults=True, exclude={"type"})
    settings = ", ".join(f"{k}={v}" for k, v in changed.items())
    return f"{name} ({settings})" if settings else name


def plot_activations(curves: Sequence[Curve], out: Path) -> Path:
    """One titled, gridded panel per activation: the function solid, its derivative dashed."""
    if not curves:
        raise ValueError("no activations to draw")
    columns = min(ACTIVATIONS_COLUMNS, len(curves))
    rows = math.ceil(len(curves) / columns)
    size = (ACTIVATION_PANEL[0] * columns, ACTIVATION_PANEL[1] * rows + 0.5)

    with figure(size, (rows, columns)) as (fig, axes):
        for ax in axes.flat[len(curves) :]:
            ax.set_visible(False)
        for ax, curve in zip(axes.flat, curves, strict=False):
            ax.axhline(0, color=OTHER_COLOUR, linewidth=0.6)
            ax.axvline(0, color=OTHER_COLOUR, linewidth=0.6)
            ax.plot(curve.x, curve.y, color=FUNCTION_COLOUR, linewidth=1.8, label="f(x)")
            ax.plot(
                curve.x,
                curve.dy,
                color=DERIVATIVE_COLOUR,
                linewidth=1.4,
                linestyle="--",
                label="f'(x)",
            )
            ax.set_title(f"{curve.name}\n({curve.note})" if curve.note else curve.name)
            ax.set_xlim(float(curve.x[0]), float(curve.x[-1]))
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize="small")
        handles, _ = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, ["f(x)", "derivative f'(x)"], loc="upper right", ncols=2)
        fig.suptitle("activations", x=0.02, ha="left", fontsize="large")
        return save(fig, out)
