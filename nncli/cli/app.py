"""The `nncli` command line: parses arguments, calls the library, renders with Rich.

torch, matplotlib and pandas are imported inside the commands that need them, so
`nncli --help` and `nncli validate` start fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from nncli.errors import EXIT_INTERNAL, NncliError, RunInterrupted, SpecError
from nncli.tables import Format, render

app = typer.Typer(
    name="nncli",
    help="Train neural networks from YAML experiment files, and compare the runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a key: --set optimizer.lr=0.01 (repeatable).",
        metavar="KEY=VALUE",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the run folder.")]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


@contextmanager
def user_errors() -> Iterator[None]:
    """NncliError -> its message in red on stderr and exit code 2; no traceback.

    Messages are escaped: Rich would read `nncli[optuna]` or `[key]` as markup.
    """
    from rich.markup import escape

    try:
        yield
    except SpecError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {escape(str(problem))}", markup=True, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except NncliError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", markup=True, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def _version(value: bool) -> None:
    if value:
        from nncli import __version__

        out.print(f"nncli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Train neural networks from YAML experiment files, and compare the runs."""


@app.command()
def train(
    file: Annotated[
        Path | None, typer.Argument(help="Experiment file (YAML).", show_default=False)
    ] = None,
    set_: SetOption = None,
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="Parent folder of run folders.")
    ] = Path("runs"),
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke", help="CI profile: cpu, one epoch of at most two batches, every file written."
        ),
    ] = False,
    resume_run: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue this run folder instead (as `nncli resume`)."),
    ] = None,
    quiet: QuietOption = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc-per-node",
            min=1,
            help="Train as N processes (torch.distributed; one GPU each on cuda, gloo on cpu).",
        ),
    ] = 1,
) -> None:
    """Train an experiment file into a new run folder (its path is the last line printed)."""
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        _launch(nproc)
    if resume_run is not None:
        if file is not None or set_ or smoke:
            err.print(
                "[red]error[/red] --resume continues a run as it was configured; give no FILE, --set or --smoke with it",
                markup=True,
            )
            raise typer.Exit(2)
        resume(resume_run, None, quiet)
        return
    if file is None:
        err.print(
            "[red]error[/red] missing FILE: the experiment file to train (or --resume RUN)",
            markup=True,
        )
        raise typer.Exit(2)
    from nncli.config import yamlio

    overrides = list(set_ or [])
    if smoke:
        overrides += ["train.epochs=1", "train.device=cpu"]
    with user_errors():
        spec = _load(file, overrides)
        _warn(file, spec, overrides)
        text = yamlio.load(file).text

    from nncli.engine.experiment import train_experiment

    _run_training(
        lambda reporter: train_experiment(spec, file, text, runs_dir, reporter, smoke=smoke), quiet
    )


@app.command()
def resume(
    run: Annotated[Path, typer.Argument(help="The run folder to continue.", show_default=False)],
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", min=1, help="Train to this many epochs (extends a completed run)."
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Continue an interrupted, failed or killed run in its folder, from its last checkpoint."""
    from nncli.engine.experiment import resume_experiment

    _run_training(lambda reporter: resume_experiment(run, reporter, epochs), quiet)


def _launch(nproc: int) -> None:
    """Re-run this command as `nproc` processes under torch.distributed.run; exit with its code.

    If a rank dies, the job stops; the run it had created is then marked failed here.
    """
    import tempfile

    from nncli.engine import distributed
    from nncli.runs import folder as runs

    args = _without_nproc(sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "run"
        code = distributed.launch(nproc, args, str(record))
        folder = Path(record.read_text()) if record.is_file() else None
    if code != 0 and folder is not None and runs.is_run(folder):
        info = runs.read_info(folder)
        if info.get("status") in ("running", "interrupted"):
            run = runs.Run(folder, info)
            run.finish(
                "failed",
                error=f"a process of the job failed (exit code {code}); see its error above",
            )
            err.print(f"the run is marked failed: {folder}", soft_wrap=True)
    raise typer.Exit(code)


def _without_nproc(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc-per-node":
            skip = True
        elif not arg.startswith("--nproc-per-node="):
            out.append(arg)
    return out


def _run_training(start: Callable[[Any], tuple[Any, Any]], quiet: bool) -> None:
    """Run a training call with console progress; map how it ends to messages and exit codes.

    Ctrl-C and SIGTERM mark the run interrupted (exit 130/143), a non-finite loss marks it
    diverged (exit 3), anything unexpected marks it failed (exit 1).
    """
    from nncli.engine import distributed
    from nncli.errors import RunDiverged
    from nncli.loggers.console import ConsoleReporter

    with user_errors():
        rank = distributed.current()
    if not rank.main:  # rank 0 speaks for the job; the others show only their own failures
        quiet = True
        err.quiet = True
    reporter = ConsoleReporter(out, quiet=quiet)
    from nncli.engine.experiment import interrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    run = None
    try:
        with user_errors():
            run, _ = start(reporter)
        reporter.stop()
        if run is not None:
            reporter.summary(run)
    except (RunInterrupted, RunDiverged) as exc:
        reporter.stop()
        folder = reporter.run.path if reporter.run else None
        if isinstance(exc, RunDiverged):
            err.print(f"[red]diverged[/red] {exc}", markup=True, soft_wrap=True)
        else:
            err.print(
                f"interrupted: the run is marked interrupted; finished epochs are kept in "
                f"{folder} (continue it with: nncli resume {folder})",
                soft_wrap=True,
            )
        if folder:
            out.print(str(folder), soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, SystemExit):
        reporter.stop()
        raise
    except Exception as exc:
        reporter.stop()
        err.quiet = False  # a rank's own failure is always shown
        _internal(exc, reporter.run.path if reporter.run else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        distributed.finish()
    if run is not None:
        out.print(str(run.path), soft_wrap=True)


def _internal(exc: BaseException, folder: Path | None) -> None:
    """An unexpected failure: one paragraph on the console, the traceback in the run's log."""
    where = f" The run is marked failed; the traceback is in {folder}/log.txt." if folder else ""
    err.print(
        f"[red]internal error[/red] {type(exc).__name__}: {exc}.{where} "
        "This is a bug in nncli or a resource problem (memory, disk); "
        "please report it with the log.",
        markup=True,
        soft_wrap=True,
    )
    if os.environ.get("NNCLI_DEBUG"):
        traceback.print_exc()
    raise typer.Exit(EXIT_INTERNAL)


def _load(file: Path, overrides: list[str]) -> Any:
    from nncli.config.spec import load_spec

    return load_spec(file, overrides)


@app.command()
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="Experiment files (YAML).", show_default=False)
    ],
    set_: SetOption = None,
    build: Annotated[
        bool,
        typer.Option(
            "--build", help="Also build the model on cpu and run one batch forward (imports torch)."
        ),
    ] = False,
) -> None:
    """Check experiment files without training; every problem of every file is listed."""
    failed = 0
    for file in files:
        try:
            with user_errors():
                spec = _load(file, list(set_ or []))
                _warn(file, spec, list(set_ or []))
                detail = ""
                if build:
                    from nncli.engine.train import prepare

                    p = prepare(
                        spec.model_copy(
                            update={"train": spec.train.model_copy(update={"device": "cpu"})}
                        )
                    )
                    detail = f", {p.task.kind}, {p.n_params:,} parameters"
            out.print(
                f"[green]ok[/green] {file}: {len(spec.model.layers)} layers, "
                f"loss {spec.loss.name}, data {spec.data.source}{detail}",
                markup=True,
                soft_wrap=True,
            )
        except typer.Exit:
            failed += 1
    if failed:
        raise typer.Exit(2)


class Kind(str, Enum):
    layers = "layers"
    losses = "losses"
    optimizers = "optimizers"
    datasets = "datasets"
    metrics = "metrics"


@app.command("list")
def list_(
    kind: Annotated[Kind, typer.Argument(help="What to list.")],
    fmt: FormatOption = Format.table,
) -> None:
    """List the registered layers, losses, optimizers, datasets or metrics, with parameters."""
    from nncli.catalogue import catalogue

    rows = catalogue(kind.value)
    _print(render(rows, list(rows[0]), fmt, title=kind.value))


@app.command()
def schema(
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to a file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of experiment files (for editor completion and checking)."""
    from nncli.config.spec import schema as make_schema

    text = json.dumps(make_schema(), indent=2)
    if out_file is None:
        sys.stdout.write(text + "\n")
    else:
        out_file.write_text(text + "\n", encoding="utf-8")
        out.print(f"wrote {out_file}")


@app.command()
def show(
    run: Annotated[Path, typer.Argument(help="A run folder.", show_default=False)],
    weights: Annotated[
        bool, typer.Option("--weights", help="Print the learned parameters.")
    ] = False,
) -> None:
    """Summarise a run: config, model (with parameter counts), final and best metrics."""
    from nncli.trained.show import describe_run

    with user_errors():
        for item in describe_run(run, weights):
            _print(item)


def _print(item: Any) -> None:
    """Text as it is; a table folded to the terminal's width, or at its full width where
    stdout is a file or a pipe (no screen to fit; a folded table would not read there)."""
    if isinstance(item, str):
        out.print(item, soft_wrap=True, markup=False)
    elif out.is_terminal:
        out.print(item)
    else:  # (print's own width= is capped at the console's)
        wide = Console(file=out.file, width=max(out.width, _natural_width(item)), highlight=False)
        wide.print(item)


def _natural_width(item: Any) -> int:
    """The width a table takes when nothing is folded."""
    return out.measure(item, options=out.options.update_width(10_000)).maximum


TABLE_ROWS = 50  # compare's terminal table; summary.csv and other formats have every run


@app.command()
def compare(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, or folders of run folders (one level down).",
            show_default=False,
            metavar="RUN...",
        ),
    ],
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            help="Best first by a metric's best value: a column (val_accuracy) or a bare "
            "metric (accuracy: its val, else test split); runs without it go last. "
            "A config key (optimizer.lr) sorts ascending.",
            metavar="METRIC",
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            min=1,
            metavar="N",
            help="Keep the N best (by --sort, else by the monitored loss).",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="Metric columns to show: test_accuracy, or accuracy for every split "
            "(repeatable or comma list; default: all).",
            metavar="NAME",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="New or empty folder for summary.csv and the figures "
            "[default: comparisons/<time>_<id> beside the runs folder]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compare runs: config keys that differ, final and best metrics, overlay figures.

    \b
    Columns: run, status, epochs (done), params, duration_s; one per config key that
    differs (dotted, list items by index: model.layers.0.units; blank where a run lacks
    it); then for each metric column of metrics.csv (e.g. test_accuracy):
      test_accuracy              its value in the last epoch
      test_accuracy best         its best value (min for losses, max otherwise)
      test_accuracy best epoch   the first epoch that reached it
    Runs with different metric columns show the union, blank where missing.

    Keys equal in every run are printed once above the table; with --format json the
    output is {"same": {...}, "runs": [...]}. summary.csv and one figure per metric
    (a colour per run; train dashed, held-out solid) go to the --out folder, whose path
    is printed on stderr at the end. Failed, interrupted or running runs are shown with
    their status ("(diverged)" added when the last loss is not finite); unreadable
    runs and paths that are not runs are left out with a warning. Exit code 2 when
    no run is usable. The terminal table shows the first 50 runs unless --top is
    given; summary.csv and the other formats have them all.
    """
    from rich.markup import escape

    from nncli.runs import compare as comparing

    names = [n.strip() for item in metric or [] for n in item.split(",") if n.strip()]
    with user_errors():
        result = comparing.compare(paths, sort=sort, top=top, metrics=names)
        for warning in result.warnings:
            err.print(f"[yellow]warning[/yellow] {escape(warning)}", markup=True, soft_wrap=True)
        folder = comparing.out_dir(out_dir, result.runs[0].path)
        comparing.write_outputs(result, folder)
    if fmt is Format.json:
        sys.stdout.write(result.json() + "\n")
    else:
        if fmt is Format.table and result.same:
            same = ", ".join(f"{k}={comparing.text(v)}" for k, v in result.same.items())
            out.print(f"same in all runs: {same}", soft_wrap=True, markup=False)
        rows = result.text_rows()
        # a terminal table of hundreds of runs is unreadable and slow to lay out
        shown = rows[:TABLE_ROWS] if fmt is Format.table and top is None else rows
        rendered = render(shown, result.columns, fmt, title="runs")
        _print(rendered)
        folded = fmt is Format.table and out.is_terminal and _natural_width(rendered) > out.width
        if folded and result.metric_columns:
            out.print(
                "the table is folded to fit the terminal; show fewer columns with --metric "
                f"(e.g. --metric {result.metric_columns[-1]}) or all with --format csv",
                soft_wrap=True,
                markup=False,
            )
        if len(shown) < len(rows):
            out.print(
                f"showing {len(shown)} of {len(rows)} runs; all are in {folder}/summary.csv "
                "(or use --top N, --format csv)",
                soft_wrap=True,
                markup=False,
            )
    err.print(f"summary and figures: {folder}", soft_wrap=True, markup=False)


@app.command()
def runs(
    folder: Annotated[Path, typer.Argument(help="Folder of runs.", metavar="DIR")] = Path("runs"),
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="Only runs with this status, e.g. running or failed,interrupted "
            "(repeatable or comma list; unreadable: run.json cannot be read).",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List runs newest first: status, start, epochs done, duration and the headline metric.

    The headline is the monitored column (the first held-out split's loss, the one that
    picks checkpoints/best.pt) with its best value and epoch.
    """
    from nncli.runs.compare import RUNS_COLUMNS, list_runs

    with user_errors():
        rows = list_runs(folder, status)
    if not rows:
        which = f" with status {', '.join(status)}" if status else ""
        message = f"no runs{which} in {folder}; train one with: nncli train EXPERIMENT.yaml"
        if fmt is Format.table:
            out.print(message, soft_wrap=True, markup=False)
            return
        err.print(message, soft_wrap=True, markup=False)
    _print(render(rows, list(RUNS_COLUMNS), fmt, title=str(folder)))


def _warn(file: Path, spec: Any, overrides: list[str]) -> None:
    """The file's activation/loss guards in yellow on stderr; the exit code stays as it is."""
    from rich.markup import escape

    from nncli.config.lint import check_file

    for problem in check_file(file, spec, overrides):
        err.print(f"[yellow]warning[/yellow] {escape(str(problem))}", markup=True, soft_wrap=True)


@app.command()
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
) -> None:
    """Draw figures: a run's plots again from its folder, or every activation function.

    \b
    nncli plot RUN            loss and metric curves, and per task the decision
                              boundary (2-D inputs), confusion matrix, predicted vs
                              true and fit (1-D inputs), from config.yaml,
                              metrics.csv and checkpoints/last.pt (on the cpu)
    nncli plot activations    every registered activation over [-5, 5], its
                              derivative dashed
    The paths written are printed, one a line. (A run folder named `activations`
    is reached as ./activations.)
    """
    with user_errors():
        if target == "activations":
            from nncli.figures import plots

            figure = out_path or Path("activations.png")
            written = [plots.plot_activations(plots.activation_curves(), figure)]
        else:
            from nncli.trained.replot import replot

            written = replot(Path(target), out_path)
    for path in written:
        out.print(str(path), soft_wrap=True, markup=False)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A run folder.", show_default=False)],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="state_dict, exported (torch.export), torchscript, or onnx (needs onnx, onnxscript).",
        ),
    ] = "exported",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to write to [default: RUN/export/FORMAT]."),
    ] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="last or best.")] = "last",
) -> None:
    """Export a trained model to a file that loads without nncli, with a model.json that
    says its input shape, output and preprocessing."""
    from nncli.trained.export import export_run

    with user_errors():
        if checkpoint not in ("last", "best"):
            raise _usage(f"--checkpoint is '{checkpoint}'; use last or best")
        for path in export_run(run, fmt, out_dir, checkpoint):
            out.print(str(path), soft_wrap=True)


def _usage(message: str) -> Exception:
    from nncli.errors import NncliError

    return NncliError(message)


class CheckpointChoice(str, Enum):
    best = "best"
    last = "last"


CheckpointOption = Annotated[
    CheckpointChoice,
    typer.Option("--checkpoint", help="Weights to use: best.pt (the monitored best) or last.pt."),
]


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A run folder.", show_default=False)],
    input_file: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="CSV of rows to predict, or .npz arrays for a run of numeric inputs.",
            show_default=False,
        ),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write the CSV here instead of stdout.", show_default=False
        ),
    ] = None,
    checkpoint: CheckpointOption = CheckpointChoice.best,
) -> None:
    """Predict new rows with a trained run, through the preprocessing it learned.

    \b
    A CSV needs the columns the run trained on (others are kept); a .npz file needs the
    inputs under the run's `x_key` (default x), one sample per row of the array, and
    gives a `row` column (its index). The output is the rows plus, for classification,
    `prediction` (the class label) and `probability` (of that class); for regression
    `prediction` (or `prediction_<target>` per target); for multi-label
    `prediction_<label>` (0/1) and `probability_<label>`.
    """
    from nncli.trained.predict import predict_file

    with user_errors():
        if out_file is not None and out_file.resolve() == input_file.resolve():
            raise NncliError(f"--out {out_file} is the input file; write to another file")
        frame = predict_file(run, input_file, checkpoint.value)
        if out_file is None:
            sys.stdout.write(frame.to_csv(index=False))
            return
        try:
            frame.to_csv(out_file, index=False)
        except OSError as exc:
            raise NncliError(f"cannot write {out_file}: {exc.strerror}") from None
    err.print(f"wrote {len(frame)} predictions to {out_file}", soft_wrap=True, markup=False)


@app.command("eval")
def eval_(
    run: Annotated[Path, typer.Argument(help="A run folder.", show_default=False)],
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
        str | None,
        typer.Option("--split", help="train, val or test [default: test, else val, else train]"),
    ] = None,
    checkpoint: CheckpointOption = CheckpointChoice.best,
    fmt: FormatOption = Format.table,
) -> None:
    """Print a run's loss and metrics on one of its splits or on a new labelled file."""
    from nncli.trained.predict import evaluate_run

    with user_errors():
        if split is not None and split not in ("train", "val", "test"):
            raise NncliError(f"--split is '{split}'; use train, val or test")
        result = evaluate_run(run, data_file, split, checkpoint.value)
    rows = [{"metric": k, "value": v} for k, v in result.metrics.items()]
    if fmt is Format.table:
        out.print(
            f"{run}: {result.rows}, {result.n} rows, {result.checkpoint.name}",
            soft_wrap=True,
            markup=False,
        )
    _print(render(rows, ["metric", "value"], fmt))


@app.command()
def sweep(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Experiment file (YAML): its `sweep:` section and/or --grid, --choice, --range.",
            show_default=False,
        ),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="KEY=V1,V2,...",
            help="Try each value, in every combination with the other grids (repeatable).",
        ),
    ] = None,
    choice: Annotated[
        list[str] | None,
        typer.Option(
            "--choice",
            metavar="KEY=V1,V2,...",
            help="Random/bayes: each trial picks one of the values (repeatable).",
        ),
    ] = None,
    range_: Annotated[
        list[str] | None,
        typer.Option(
            "--range",
            metavar="KEY=LOW:HIGH[:log]",
            help="Random/bayes: each trial draws a number, log-uniform with :log; whole "
            "numbers when LOW and HIGH are (repeatable).",
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="grid, random or bayes (needs: pip install 'nncli[optuna]') "
            "[default: grid for grids, else random]",
            show_default=False,
        ),
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--trials", "-n", min=1, help="How many trials random or bayes search runs."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            min=0,
            help="Seed of the draws [default: sweep.seed, else 0]; each run keeps the file's "
            "seed (sweep it with --grid seed=0,1,2).",
            show_default=False,
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            "-m",
            metavar="SPLIT_METRIC",
            help="Ranks the trials by its best value: val_loss, val_accuracy, ... "
            "[default: sweep.metric, else train.monitor]",
            show_default=False,
        ),
    ] = None,
    set_: SetOption = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Trials at once, each its own process.")
    ] = 1,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="New or empty sweep folder [default: sweeps/<time>_<name>_<id>]",
            show_default=False,
        ),
    ] = None,
    resume_dir: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="SWEEP_DIR",
            help="Continue a sweep: completed trials are kept, interrupted ones resumed, "
            "failed ones run again.",
            show_default=False,
        ),
    ] = None,
    fail_fast: Annotated[
        bool,
        typer.Option("--fail-fast", help="Stop at the first failed trial, and the running ones."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every trial and list them; run nothing.")
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Search over settings: each trial a run folder, then the trials ranked by a metric.

    \b
    Every trial's config is checked before the first one starts. Each trial is
    `nncli train FILE --set KEY=VALUE ...` in a process of its own (--jobs at once), its
    run folder in SWEEP/runs. SWEEP/sweep.json holds every trial's settings, status, run
    folder and metric; a line on stderr reports each start and end. At the end the trials
    are compared (ranked by the metric's best value) on stdout, and the best completed
    trial's config.yaml is copied to SWEEP/best.yaml.
    Exit 0 when every trial completed, 1 when any did not (failed, diverged), 2 for
    mistakes in the input, 130 on Ctrl-C (running trials are marked interrupted;
    --resume finishes them).
    """
    from rich.markup import escape

    from nncli.sweep import core as sweeping

    options = sweeping.Options(
        grid or [], choice or [], range_ or [], method, n_trials, seed, metric
    )
    with user_errors():
        if resume_dir is not None:
            refused = options.given() + [
                flag
                for flag, given in (("--set", set_), ("--out", out_dir), ("--dry-run", dry_run))
                if given
            ]
            if refused:
                raise NncliError(
                    f"--resume continues a sweep as it was planned; give no {', '.join(refused)} "
                    "with it (--metric, --jobs and --fail-fast may change)"
                )
            state = sweeping.reopen(resume_dir, file)
        else:
            if file is None:
                raise NncliError(
                    "missing FILE: the experiment file to sweep (or --resume SWEEP_DIR)"
                )
            plan = sweeping.plan(file, list(set_ or []), options)
            if dry_run:
                _print(_sweep_plan(plan, fmt))
                return
            state = sweeping.create(plan, out_dir)

    space = state.space
    left = sum(t.status in sweeping.RETRIED for t in state.trials)
    left += space.n_trials - len(state.trials)  # bayes: the trials not asked for yet
    err.print(
        f"sweep {state.folder}: {space.n_trials} trials ({space.method}), {left} to run, "
        f"{jobs} at once",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    try:
        with user_errors():
            sweeping.run(state, jobs, fail_fast, _sweep_event)
    except RunInterrupted as exc:
        err.print(
            "interrupted: the running trials are marked interrupted; finish the sweep with: "
            f"nncli sweep --resume {state.folder}",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(exc.exit_code) from None

    with user_errors():
        # a new sweep's --metric is in its plan; with --resume it re-ranks the trials
        summary = sweeping.summarize(state, metric if resume_dir is not None else None)
    for warning in summary.warnings:
        err.print(f"[yellow]warning[/yellow] {escape(warning)}", markup=True, soft_wrap=True)
    table = summary.table(fmt)
    if table is not None:
        _print(table)
    if summary.best is not None:
        err.print(
            f"best: trial {summary.best.number} ({' '.join(summary.best.settings)}), "
            f"{summary.metric} {summary.best_value:.4g}; its config: {summary.best_file}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    unfinished = [t for t in state.trials if t.status != "completed"]
    if unfinished:
        err.print(
            f"{len(unfinished)} of {space.n_trials} trials did not complete "
            f"({', '.join(f'{t.number} {t.status}' for t in unfinished)}); run them again "
            f"with: nncli sweep --resume {state.folder}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1)


def _sweep_plan(plan: Any, fmt: Format) -> Any:
    """--dry-run: the trials' settings (bayes: the search space, its trials come later)."""
    from nncli.sweep.core import value_text

    space = plan.space
    if space.method == "bayes":
        rows = [
            {
                "key": p.key,
                "kind": p.kind,
                "values": ", ".join(value_text(v) for v in p.values)
                if p.bounds is None
                else f"{p.bounds.low} to {p.bounds.high}{' (log)' if p.bounds.log else ''}",
            }
            for p in space.params
        ]
        title = f"bayes search: {space.n_trials} trials picked as results come in"
        return render(rows, ["key", "kind", "values"], fmt, title=title)
    keys = [p.key for p in space.params]
    rows = [
        {"trial": n, **{k: value_text(v) for k, v in params.items()}}
        for n, params in enumerate(plan.trials, start=1)
    ]
    return render(rows, ["trial", *keys], fmt, title=f"{space.method} search")


def _sweep_event(event: Any) -> None:
    """One line on stderr per trial start and end (and for notes), as they happen."""
    from rich.markup import escape

    if event.kind == "note":
        err.print(f"[yellow]{escape(event.text)}[/yellow]", markup=True, soft_wrap=True)
        return
    trial = event.trial
    head = f"trial {trial.number}/{event.total}"
    what = escape(" ".join(trial.settings))
    if event.kind == "start":
        verb = f"resuming {trial.run}" if event.resumed else "started"
        err.print(f"{head}  {verb}  {what}", markup=True, soft_wrap=True, highlight=False)
        return
    colour = {"completed": "green", "interrupted": "yellow"}.get(trial.status, "red")
    parts = [head, f"[{colour}]{trial.status}[/{colour}]", what]
    if trial.value is not None:
        parts.append(f"{trial.metric} {trial.value:.4g}")
    parts.append(f"{trial.duration_s:.1f}s")
    if trial.status in ("failed", "diverged"):
        parts.append(f"exit {trial.exit_code}: {escape(trial.error or '')}  (log: {event.log})")
    err.print("  ".join(parts), markup=True, soft_wrap=True, highlight=False)


def main() -> None:
    import gc

    from nncli.engine import distributed

    rank = distributed.is_rank()
    if rank:
        import faulthandler

        faulthandler.enable()  # a rank killed by a C++ abort shows where it was
    try:
        app()
    except SystemExit as exc:
        if rank:
            distributed.exit_now(exc.code)
        raise
    finally:
        # the process ends here: spare it the final collection of the objects torch and
        # matplotlib built (0.3-0.8 s of `nncli train`'s wall time; see bench/)
        gc.freeze()
