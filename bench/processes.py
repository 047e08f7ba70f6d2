"""Whole-process timings for bench/run.py: `nncli --help`, `nncli validate`, `nncli train`
of the circles example (wall, peak RSS, and its phases) and the tutorial script."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CIRCLES = ROOT / "experiments" / "circles.yaml"
NNCLI = Path(sys.executable).with_name("nncli")
HEAVY = ("torch", "pandas", "matplotlib", "sklearn", "scipy")


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process (through bench/measure.py); it must
    succeed. `cmd[0]` is an absolute path."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "measure.json"
        launcher = [sys.executable, "-S", str(BENCH / "measure.py"), str(record)]
        done = subprocess.run(
            [*launcher, *cmd], stdout=out, stderr=out, cwd=ROOT, env=env, check=False
        )
        result = json.loads(record.read_text(encoding="utf-8")) if record.exists() else {}
        if done.returncode != 0 or result.get("code") != 0:
            out.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.read().decode(errors='replace')}")
    return float(result["wall_s"]), result["max_rss_kb"] / 1024


def imported(args: list[str]) -> list[str]:
    """Which heavy packages `nncli ARGS` imports (run in a fresh interpreter)."""
    code = (
        "import sys\nfrom nncli.cli.app import main\n"
        f"sys.argv = ['nncli', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("HEAVY"))
    return list(json.loads(line.split(" ", 1)[1].replace("'", '"')))


def summary(walls: list[float], rss: list[float] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"runs_s": walls, "median_s": statistics.median(walls)}
    if rss:
        out["peak_rss_mb"] = max(rss)
    return out


def phases(marks: dict[str, float], wall: float) -> dict[str, float]:
    """Start-up (everything before the first batch), training, plots, writing, exit."""
    fit = marks["fit_end"] - marks["fit_start"]
    return {
        "start_up": marks["fit_start"],
        "imports_cli": marks["cli_imported"],
        "imports_engine": marks["engine_imported"] - marks["cli_imported"],
        "prepare": marks["prepare_end"] - marks["prepare_start"],
        "training": fit - marks["sink_writes"],
        "plots": marks["plots_end"] - marks["plots_start"],
        "writing": marks["sink_writes"] + (marks["main_end"] - marks["plots_end"]),
        "exit": wall - marks["main_end"],
        "total": wall,
    }


def bench_cli(folder: Path, repeats: int) -> dict[str, Any]:
    runs = folder / "runs"
    help_s = [run([str(NNCLI), "--help"])[0] for _ in range(max(repeats, 5))]
    validate_s = [run([str(NNCLI), "validate", str(CIRCLES)])[0] for _ in range(max(repeats, 5))]
    train_cmd = [str(NNCLI), "train", str(CIRCLES), "--quiet", "--runs-dir", str(runs)]
    tutorial_cmd = [sys.executable, str(BENCH / "tutorial_circles.py")]
    marks_file = folder / "phases.json"
    env = {**os.environ, "NNCLI_BENCH_PHASES": str(marks_file)}
    train_s, train_rss, tutorial_s, tutorial_rss = [], [], [], []
    split: list[dict[str, float]] = []
    for r in range(repeats):  # interleaved, so load changes hit both alike
        pair = [("tutorial", tutorial_cmd), ("train", train_cmd)]
        for name, cmd in pair if r % 2 == 0 else pair[::-1]:
            wall, rss = run(cmd)
            (tutorial_s if name == "tutorial" else train_s).append(wall)
            (tutorial_rss if name == "tutorial" else train_rss).append(rss)
        phase_cmd = [sys.executable, str(BENCH / "phases.py"), *train_cmd[2:]]
        wall, _ = run(phase_cmd, env)
        split.append(phases(json.loads(marks_file.read_text(encoding="utf-8")), wall))
    keys = split[0].keys()
    return {
        "help": summary(help_s) | {"imports": imported(["--help"])},
        "validate": summary(validate_s) | {"imports": imported(["validate", str(CIRCLES)])},
        "train_circles": summary(train_s, train_rss),
        "tutorial_circles": summary(tutorial_s, tutorial_rss),
        "train_phases": {k: statistics.median(s[k] for s in split) for k in keys},
    }
