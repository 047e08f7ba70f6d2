"""What compare needs of one run folder: run.json, config.yaml and metrics.csv read and
checked, and the run folders found under the paths given."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nncli.errors import NncliError, first_line
from nncli.layers import layers
from nncli.metrics import direction
from nncli.runs.files import CONFIG, METRICS, RUN_JSON
from nncli.runs.folder import NOT_METRICS
from nncli.runs.lock import abandoned
from nncli.runs.record import RunInfo, UnreadableRun, flatten, is_run, read_run

# The C loader reads our own resolved configs ~8x faster (500: 0.08 s, not 0.66 s); we need
# no line numbers for files nncli wrote itself.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

LAYERS = "model.layers."  # the prefix of a flattened config's layer keys
KILLED = "killed"  # run.json says running, but the process that held run.lock is gone


def live_status(path: Path, status: str | None) -> str:
    """run.json's status, or `killed` for a `running` run whose trainer died without saying
    so (its run.lock names a process that no longer holds it; `nncli resume` continues it)."""
    if status == "running" and abandoned(path):
        return KILLED
    return status or "unknown"


@dataclass
class RunData:
    """What compare needs of one run folder, read and checked."""

    path: Path
    info: RunInfo  # read leniently: a field of the wrong type reads as missing
    config: dict[str, Any]  # flattened: `optimizer.lr` -> 0.01
    rows: list[dict[str, float]]  # metrics.csv, one dict per epoch
    columns: list[str]  # metric columns of metrics.csv, in file order

    @classmethod
    def read(cls, path: Path) -> RunData:
        """A run folder's three files, checked; NncliError naming the file that is unreadable
        (relative to the run: compare names the run beside it)."""
        try:
            info = read_run(path, strict=False)
        except UnreadableRun as exc:
            raise NncliError(exc.what) from None
        try:
            config = yaml.load((path / CONFIG).read_text(encoding="utf-8"), Loader=_LOADER)
        except FileNotFoundError:
            raise NncliError(f"{CONFIG} is missing") from None
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise NncliError(f"{CONFIG}: {first_line(exc)}") from None
        if not isinstance(config, dict):
            raise NncliError(f"{CONFIG} does not hold a mapping")
        config = _plain(config, [_MAX_CONFIG_VALUES])
        running = info.status == "running"
        header, rows = _read_metrics(path / METRICS, running)
        done = info.epochs_done or 0
        # run.json is rewritten after each row reaches metrics.csv, so fewer rows means lost
        # data; except while a resumed run trains again the epochs after its checkpoint
        if len(rows) < done and not running:
            raise NncliError(
                f"{METRICS} has {len(rows)} rows but {RUN_JSON} says {done} epochs done"
            )
        columns = [c for c in header if c not in NOT_METRICS]
        return cls(path, info, flatten(config), rows, columns)

    @property
    def name(self) -> str:
        return self.path.name

    def base(self) -> dict[str, Any]:
        """The first columns of its row in the comparison (compare.BASE_COLUMNS)."""
        return {
            "run": self.name,
            "status": self.status,
            "epochs": self.info.epochs_done,
            "params": self.info.n_params,
            "duration_s": self.info.duration_s,
        }

    @property
    def layer_types(self) -> list[str]:
        """The type of each layer in config.yaml's model.layers, in order."""
        types: list[str] = []
        while f"{LAYERS}{len(types)}.type" in self.config:
            types.append(str(self.config[f"{LAYERS}{len(types)}.type"]))
        return types

    @property
    def architecture(self) -> str:
        """The layer stack in one word: `dense16-relu-dense1-sigmoid`; each layer with a
        size (units, channels, kernel, rate) has it appended, activations are bare."""
        words = []
        for i, kind in enumerate(self.layer_types):
            entry = layers.find(kind)
            size: Any = None
            if entry is not None and entry.positional and not entry.info.activation:
                size = self.config.get(f"{LAYERS}{i}.{entry.positional}")
            number = isinstance(size, int | float) and not isinstance(size, bool) and size > 0
            words.append(f"{kind}{size:g}" if number else kind)
        return "-".join(words)

    def best(self, column: str) -> tuple[float, int] | None:
        """(value, epoch) of the best finite value of `column`; ties keep the first epoch."""
        lower = direction(column) == "min"
        found: tuple[float, int] | None = None
        for row in self.rows:
            value = row.get(column, math.nan)
            if not math.isfinite(value):
                continue
            if found is None or (value < found[0] if lower else value > found[0]):
                found = (value, int(row["epoch"]))
        return found

    def final(self, column: str) -> float | None:
        value = self.rows[-1].get(column) if self.rows else None
        return value if value is not None and math.isfinite(value) else None

    @property
    def status(self) -> str:
        status = live_status(self.path, self.info.status)
        last = self.rows[-1] if self.rows else {}
        losses = [v for k, v in last.items() if k.endswith("_loss")]
        nan = any(not math.isfinite(v) for v in losses)
        return f"{status} (diverged)" if nan and status != "diverged" else status


def find_runs(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(run folders, skipped paths): each path is a run folder or a folder of run folders."""
    found: dict[Path, Path] = {}
    skipped: list[Path] = []
    for path in paths:
        if is_run(path):
            found.setdefault(path.resolve(), path)
            continue
        try:
            inside = sorted(p for p in path.iterdir() if is_run(p)) if path.is_dir() else []
        except OSError:  # unreadable folder: reported with the other skipped paths
            inside = []
        if not inside:
            skipped.append(path)
        for run in inside:
            found.setdefault(run.resolve(), run)
    return list(found.values()), skipped


_MAX_CONFIG_VALUES = 100_000  # a resolved config holds hundreds; aliases could make billions
_MAX_CONFIG_DEPTH = 64


def _plain(value: Any, budget: list[int], depth: int = 0) -> Any:
    """A copy of a loaded config.yaml made of dicts with text keys, lists and plain values
    (a date or set becomes its text). NncliError for a file that refers to itself or
    expands past the budget: aliases are shared when loaded, but copied here and by flatten.
    """
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_CONFIG_DEPTH:
        raise NncliError(f"{CONFIG} nests or repeats too much (aliases?); nncli writes it plain")
    if isinstance(value, dict):
        return {str(k): _plain(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, budget, depth + 1) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def _read_metrics(file: Path, running: bool = False) -> tuple[list[str], list[dict[str, float]]]:
    """Header and rows of metrics.csv; NncliError when a line is cut or not numbers (a
    running run's last line may be one being written: it is left out)."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []  # the run ended (or is) before its first epoch
    except (OSError, ValueError) as exc:
        raise NncliError(f"{METRICS}: {first_line(exc)}") from None
    if running:
        text = text[: text.rfind("\n") + 1]
    if not text:
        return [], []
    # every row is written whole with its newline, so a missing one means the file was cut
    if not text.endswith("\n"):
        raise NncliError(f"{METRICS} is truncated (its last line is incomplete)")
    lines = text.splitlines()
    header = lines[0].split(",")
    if "epoch" not in header:
        raise NncliError(f"{METRICS} has no epoch column in its header")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) != len(header):
            raise NncliError(f"{METRICS} line {number} has {len(cells)} of {len(header)} cells")
        try:
            rows.append(
                {k: float(v) if v else math.nan for k, v in zip(header, cells, strict=True)}
            )
        except ValueError:
            raise NncliError(f"{METRICS} line {number} is not numbers") from None
        if not math.isfinite(rows[-1]["epoch"]):
            raise NncliError(f"{METRICS} line {number} has no epoch")
    return header, rows
