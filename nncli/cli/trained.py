"""`nncli plot`, `nncli export`, `nncli predict` and `nncli eval`: a trained run's model
put to use."""

from __future__ import annotations

import math
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nncli.cli.common import (
    CheckpointChoice,
    CheckpointOption,
    FormatOption,
    RunArgument,
    err,
    out,
    print_item,
    user_errors,
)
from nncli.errors import NncliError
from nncli.tables import Format, render
from nncli.trained.export import ModelFormat

if TYPE_CHECKING:  # the registries load pydantic, which --help does without
    from nncli.registry import Params


class SplitChoice(str, Enum):
    train = "train"
    val = "val"
    test = "test"


def plot(
    target: Annotated[
        str,
        typer.Argument(
            help="A run folder, or `activations` for the activation gallery.",
            show_default=False,
            metavar="RUN|activations",
        ),
    ],
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="activations: the PNG to write [default: activations.png]; "
            "a run: the folder for its figures [default: RUN/plots].",
            show_default=False,
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="NAME[=VALUE]",
            help="activations: draw these (repeatable), VALUE setting the one parameter "
            "it has: --only leaky_relu=0.2 --only elu=0.5 --only relu.",
            show_default=False,
        ),
    ] = None,
    range_: Annotated[
        str,
        typer.Option("--range", metavar="LOW:HIGH", help="activations: the inputs drawn."),
    ] = "-5:5",
) -> None:
    """Draw figures: a run's plots again from its folder, or every activation function.

    \b
    nncli plot RUN            loss and metric curves, and per task the decision
                              boundary (2-D inputs), confusion matrix, predicted vs
                              true and fit (1-D inputs), from config.yaml,
                              metrics.csv and checkpoints/last.pt (on the cpu);
                              then RUN/report.html again (not with --out)
    nncli plot activations    every registered activation over [-5, 5] (--range),
                              its derivative dashed; --only picks some, with
                              their parameter (--only leaky_relu=0.2)
    The paths written are printed, one a line. (A run folder named `activations`
    is reached as ./activations.)
    """
    with user_errors():
        if target == "activations":
            from nncli.figures import activations

            figure = out_path or Path("activations.png")
            lo, hi = _range(range_)
            chosen = [_activation(item) for item in only] if only else None
            curves = activations.activation_curves(chosen, lo, hi)
            written = [activations.plot_activations(curves, figure)]
        else:
            from nncli.trained.replot import replot

            written = replot(Path(target), out_path)
    for path in written:
        out.print(str(path), soft_wrap=True, markup=False)


def _range(text: str) -> tuple[float, float]:
    """`--range -3:3` as its two numbers, the first below the second."""
    low, _, high = text.partition(":")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise NncliError(f"--range {text}: expected LOW:HIGH, e.g. --range -3:3") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise NncliError(f"--range {text}: LOW must be below HIGH, both finite")
    return lo, hi


def _activation(item: str) -> Params:
    """`--only leaky_relu=0.2`: the activation's parameters, its one parameter set."""
    from pydantic import ValidationError

    from nncli.config import yamlio
    from nncli.layers import activations, layers

    name, sep, value = item.partition("=")
    entry = layers.get(name.strip())  # an unknown name says which exist
    if not entry.info.activation:
        raise NncliError(
            f"--only {item}: {entry.name} is a layer, not an activation; "
            f"activations: {', '.join(activations())}"
        )
    if sep and entry.positional is None:
        raise NncliError(
            f"--only {item}: {entry.name} takes no parameter; write --only {entry.name}"
        )
    settings = {entry.positional: yamlio.parse_value(value)} if sep and entry.positional else {}
    try:
        return entry.params.model_validate(settings)
    except ValidationError as exc:
        reason = str(exc.errors()[0]["msg"]).removeprefix("Input ")
        raise NncliError(f"--only {item}: {entry.positional} {reason}") from None


def export(
    run: RunArgument,
    to: Annotated[
        ModelFormat,
        typer.Option(
            "--to",
            "--format",
            "-f",
            help="The model format: state_dict, exported (torch.export), torchscript, or onnx "
            "(needs onnx, onnxscript). --format/-f is its older spelling.",
        ),
    ] = ModelFormat.exported,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to write to [default: RUN/export/FORMAT]."),
    ] = None,
    checkpoint: CheckpointOption = CheckpointChoice.last,
) -> None:
    """Export a trained model to a file that loads without nncli, with a model.json that
    says its input shape, output and preprocessing."""
    from nncli.trained.export import export_run

    with user_errors():
        for path in export_run(run, to, out_dir, checkpoint.value):
            out.print(str(path), soft_wrap=True)


def predict(
    run: RunArgument,
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT...",
            help="CSV of rows to predict, or .npz arrays for a run of numeric inputs; for a "
            "run trained on images, image files and folders of them.",
            show_default=False,
        ),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write the CSV here instead of stdout.", show_default=False
        ),
    ] = None,
    checkpoint: CheckpointOption = CheckpointChoice.last,
) -> None:
    """Predict new rows with a trained run, through the preprocessing it learned.

    \b
    A CSV needs the columns the run trained on (others are kept); a .npz file needs the
    inputs under the run's `x_key` (default x), one sample per row of the array, and
    gives a `row` column (its index). The output is the rows plus, for classification,
    `prediction` (the class label) and `probability` (of that class); for regression
    `prediction` (or `prediction_<target>` per target); for multi-label
    `prediction_<label>` (0/1) and `probability_<label>`. A run trained on images
    takes image files and folders (their image files, subfolders too) and gives a
    `path` column, one row per image.
    """
    from nncli.trained.predict import predict_inputs

    with user_errors():
        if out_file is not None and any(out_file.resolve() == i.resolve() for i in inputs):
            raise NncliError(f"--out {out_file} is the input file; write to another file")
        frame = predict_inputs(run, inputs, checkpoint.value)
        if out_file is None:
            sys.stdout.write(frame.to_csv(index=False))
            return
        from nncli.runs.files import write_atomic

        write_atomic(out_file, frame.to_csv(index=False))  # whole, or the old file kept
    err.print(f"wrote {len(frame)} predictions to {out_file}", soft_wrap=True, markup=False)


def eval_(
    run: RunArgument,
    data_file: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Labelled CSV with the run's input and target columns, or .npz arrays "
            "(x_key, y_key) for a run of numeric inputs (default: a split of the run's "
            "own data).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        SplitChoice | None,
        typer.Option(
            "--split", help="The split to evaluate [default: test, else val, else train]."
        ),
    ] = None,
    checkpoint: CheckpointOption = CheckpointChoice.last,
    fmt: FormatOption = Format.table,
) -> None:
    """Print a run's loss and metrics on one of its splits or on a new labelled file."""
    from nncli.trained.evaluate import evaluate_run

    with user_errors():
        result = evaluate_run(run, data_file, split.value if split else None, checkpoint.value)
    rows = [{"metric": k, "value": v} for k, v in result.metrics.items()]
    if fmt is Format.table:
        out.print(
            f"{run}: {result.rows}, {result.n} rows, {result.checkpoint.name}",
            soft_wrap=True,
            markup=False,
        )
    print_item(render(rows, ["metric", "value"], fmt))
