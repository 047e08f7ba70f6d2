"""`nncli sweep`: plan, run and rank a search, with a line per trial on stderr."""

from __future__ import annotations

import signal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nncli.cli.common import (
    FormatOption,
    SetOption,
    err,
    print_item,
    user_errors,
)
from nncli.errors import NncliError, RunInterrupted
from nncli.tables import Format, render

if TYPE_CHECKING:  # the command imports them as it runs: `nncli --help` stays fast
    from rich.console import RenderableType

    from nncli.sweep.execute import Event
    from nncli.sweep.plan import Plan


class MethodChoice(str, Enum):
    """How a sweep picks its trials (the names of sweep.method)."""

    grid = "grid"
    random = "random"
    bayes = "bayes"


class LauncherChoice(str, Enum):
    """Where the sweep's workers run."""

    local = "local"
    slurm = "slurm"


class StartChoice(str, Enum):
    """How a trial's process starts (nncli/sweep/warm.py)."""

    warm = "warm"
    process = "process"


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
        MethodChoice | None,
        typer.Option(
            "--method",
            help="Every grid combination, random draws, or bayes (needs: pip install "
            "'nncli[optuna]') [default: grid for grids, else random]",
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
    start: Annotated[
        StartChoice,
        typer.Option(
            "--start",
            help="warm: each trial is forked from one process that imported torch and nncli "
            "once (seconds less per trial); process: a fresh `nncli train` process per trial.",
        ),
    ] = StartChoice.warm,
    join_dir: Annotated[
        Path | None,
        typer.Option(
            "--join",
            metavar="SWEEP_DIR",
            help="Work on a running sweep (this machine or another with the same files): "
            "take its pending trials, and those of workers that died, until none are left.",
            show_default=False,
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            envvar="NNCLI_SWEEP_STORAGE",
            help="Bayes: the Optuna database that keeps the study (postgresql://...) "
            "[default: a journal file in the sweep folder]",
            show_default=False,
        ),
    ] = None,
    launcher: Annotated[
        LauncherChoice,
        typer.Option(
            "--launcher",
            help="local: this process runs the trials; slurm: sweep.slurm.workers jobs, each "
            "a --join worker, are submitted through submitit (pip install 'nncli[slurm]') "
            "and waited for.",
        ),
    ] = LauncherChoice.local,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc-per-node",
            min=1,
            help="Each trial as N processes (torchrun; one GPU each on cuda).",
        ),
    ] = 1,
) -> None:
    """Search over settings: each trial a run folder, then the trials ranked by a metric.

    \b
    Every trial's config is checked before the first one starts. Each trial is
    `nncli train FILE --set KEY=VALUE ...` in a process of its own (--jobs at once), its
    run folder in SWEEP/runs. SWEEP/sweep.json holds every trial's settings, status, run
    folder and metric; a line on stderr reports each start and end. At the end the trials
    are compared (ranked by the metric's best value) on stdout, and the best completed
    trial's config.yaml is copied to SWEEP/best.yaml.
    Workers on other machines share it with --join SWEEP_DIR; each trial is run by one
    worker, and a dead worker's trial is resumed by another.
    Exit 0 when every trial completed (or was pruned), 1 when any did not (failed,
    diverged), 2 for mistakes in the input, 130 on Ctrl-C (running trials are marked
    interrupted; --resume finishes them).
    """
    from nncli.engine.signals import exit_code, recorded_signals

    # Ctrl-C and SIGTERM are recorded from here on, not raised wherever they land (in an
    # import, in pydantic): the sweep stops its trials and says where it stopped
    with recorded_signals() as received:
        from nncli.sweep import warm

        local = launcher == LauncherChoice.local and nproc == 1 and not dry_run
        if local and start == StartChoice.warm:
            # its imports run while this process imports its own and checks the trials
            search: dict[str, object] = {"grid": grid or [], "choice": choice or []}
            search |= {"range": range_ or [], "method": method.value if method else None}
            search |= {"n_trials": n_trials, "seed": seed}
            warm.prewarm(file, set_ or [], join_dir or resume_dir, search)

        from rich.markup import escape

        from nncli.loggers.sweep_prune import open_storage
        from nncli.sweep.execute import run
        from nncli.sweep.plan import plan as make_plan
        from nncli.sweep.space import METHODS, Options, import_optuna
        from nncli.sweep.state import RETRIED, TAKEN, create, reopen
        from nncli.sweep.summary import draw_best, summarize, unfinished

        chosen = METHODS[method.value] if method is not None else None
        options = Options(grid or [], choice or [], range_ or [], chosen, n_trials, seed, metric)
        again = join_dir or resume_dir  # a sweep that exists
        with user_errors():  # every input mistake below is an NncliError: exit 2, one style
            if join_dir is not None and resume_dir is not None:
                raise NncliError("give --join or --resume, not both")
            if again is not None:
                flag = "--join" if join_dir is not None else "--resume"
                joined_file = join_dir is not None and file is not None
                given: list[tuple[str, object]] = [("--set", set_), ("--out", out_dir)]
                given += [("--dry-run", dry_run), ("FILE", joined_file)]
                refused = options.given() + [flag for flag, value in given if value]
                if refused:
                    raise NncliError(
                        f"{flag} continues a sweep as it was planned; give no {', '.join(refused)} "
                        "with it (--metric, --jobs and --fail-fast may change)"
                    )
                state = reopen(again, file, retry=resume_dir is not None)
                state.use_storage(storage)
                if state.space.method == "bayes" and state.storage is not None:
                    open_storage(import_optuna(), state.storage)  # refused here, not in a worker
            elif file is None:
                raise NncliError(
                    "missing FILE: the experiment file to sweep (or --resume SWEEP_DIR)"
                )
            else:
                plan = make_plan(file, list(set_ or []), options)
                if dry_run:
                    print_item(_sweep_plan(plan, fmt))
                    return
                if storage is not None and plan.space.method != "bayes":
                    raise NncliError("--storage is where bayes search keeps its study; give it "
                                     "with --method bayes only")  # fmt: skip
                if storage is not None:  # refused before the sweep folder is made
                    open_storage(import_optuna(), storage)
                if received:
                    _say("interrupted before the sweep folder was made; nothing was written")
                    raise typer.Exit(exit_code(received))
                state = create(plan, out_dir, storage)

            space = state.space
            left = sum(t.status in (RETRIED if resume_dir else TAKEN) for t in state.trials)
            left += space.n_trials - len(state.trials)  # bayes: the trials not asked for yet
            where = "on Slurm" if launcher == LauncherChoice.slurm else "at once"
            _say(
                f"sweep {state.folder}: {space.n_trials} trials ({space.method}), {left} to run, "
                f"{jobs} {where}"
            )
            try:
                if launcher == LauncherChoice.slurm:
                    _on_slurm(state, jobs, start.value, nproc)
                else:
                    run(state, jobs, fail_fast, _sweep_event, start.value, nproc, again is None)
            except RunInterrupted as exc:
                _say(
                    "interrupted: the running trials are marked interrupted; finish the sweep "
                    f"with: nncli sweep --resume {state.folder}"
                )
                raise typer.Exit(exc.exit_code) from None
            # a new sweep's --metric is in its plan; with --resume it re-ranks the trials
            summary = summarize(state, metric if again is not None else None)
            unplotted = draw_best(state, "process" if nproc > 1 else start.value)
            if unplotted is not None:
                summary.warnings.append(unplotted)

        for warning in summary.warnings:
            err.print(f"[yellow]warning[/yellow] {escape(warning)}", markup=True, soft_wrap=True)
        table = summary.table(fmt)
        if table is not None:
            print_item(table)
        if summary.best is not None:
            _say(
                f"best: trial {summary.best.number} ({' '.join(summary.best.settings)}), "
                f"{summary.metric} {summary.best_value:.4g}; its config: {summary.best_file}"
            )
        undone = unfinished(state)
        if undone is not None:
            _say(undone)
            raise typer.Exit(1)


def _on_slurm(state: Any, jobs: int, start: str, nproc: int) -> None:
    """Submit the workers and wait for them; each job's failure is a line on stderr."""
    from nncli.sweep.slurm import submit, wait

    submitted = submit(state, jobs, start, nproc)
    _say(f"submitted {len(submitted)} workers: jobs {', '.join(j.job_id for j in submitted)}")
    # Ctrl-C stops the waiting here (the sweep records signals elsewhere)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        failures = wait(submitted)
    except KeyboardInterrupt:
        _say("the workers go on as jobs; see the sweep with: nncli sweep --resume SWEEP_DIR")
        raise RunInterrupted() from None
    finally:
        signal.signal(signal.SIGINT, previous)
    for line in failures:
        _say(line)
    state.refresh()


def _say(text: str) -> None:
    """A plain line on stderr: no markup, no highlighting (paths and settings as given)."""
    err.print(text, soft_wrap=True, markup=False, highlight=False)


def _sweep_plan(plan: Plan, fmt: Format) -> RenderableType:
    """--dry-run: the trials' settings (bayes: the search space, its trials come later)."""
    from nncli.sweep.space import value_text

    space = plan.space
    rows: list[dict[str, Any]]
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


def _sweep_event(event: Event) -> None:
    """One line on stderr per trial start and end (and for notes), as they happen."""
    from rich.markup import escape

    if event.kind == "note":
        err.print(f"[yellow]{escape(event.text)}[/yellow]", markup=True, soft_wrap=True)
        return
    trial = event.trial
    assert trial is not None  # starts and ends name their trial
    head = f"trial {trial.number}/{event.total}"
    what = escape(" ".join(trial.settings))
    if event.kind == "start":
        verb = f"resuming {trial.run}" if event.resumed else "started"
        err.print(f"{head}  {verb}  {what}", markup=True, soft_wrap=True, highlight=False)
        return
    colour = {"completed": "green", "interrupted": "yellow", "pruned": "yellow"}.get(
        trial.status, "red"
    )
    parts = [head, f"[{colour}]{trial.status}[/{colour}]", what]
    if trial.value is not None:
        parts.append(f"{trial.metric} {trial.value:.4g}")
    parts.append(f"{trial.duration_s:.1f}s")
    if trial.status in ("failed", "diverged"):
        code = "" if trial.exit_code is None else f"exit {trial.exit_code}: "  # None: lost
        parts.append(f"{code}{escape(trial.error or '')}  (log: {event.log})")
    err.print("  ".join(parts), markup=True, soft_wrap=True, highlight=False)
