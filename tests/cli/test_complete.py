"""Shell completion: Typer's own install/show options, run folders for commands that take
one, the `nncli list` kinds and the keys `--set` takes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def complete(words: str, cwd: Path) -> list[str]:
    """What bash completion offers for the last word of `words` (Typer's protocol)."""
    env = {
        **os.environ,
        "_NNCLI_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    nncli = Path(sys.executable).with_name("nncli")
    result = subprocess.run(
        [str(nncli)], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    for name in ("2026-12-01T10-00-00_circles_1a2b", "2026-12-01T11-00-00_moons_3c4d"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "run.json").write_text("{}")
    (tmp_path / "runs" / "not-a-run" / "inner").mkdir(parents=True)
    return tmp_path


def test_run_folders_complete_for_commands_that_take_one(runs: Path) -> None:
    for command in ("show", "predict", "export", "resume", "eval"):
        assert complete(f"nncli {command} runs/2026-12-01T1", runs) == [
            "runs/2026-12-01T10-00-00_circles_1a2b",
            "runs/2026-12-01T11-00-00_moons_3c4d",
        ], command
    # a folder that is not a run is offered as a folder to go into
    assert complete("nncli show runs/n", runs) == ["runs/not-a-run/"]
    assert complete("nncli show ", runs)[:1] == ["runs/2026-12-01T10-00-00_circles_1a2b"]


def test_set_keys_and_list_kinds_complete(tmp_path: Path) -> None:
    assert complete("nncli train x.yaml --set optimizer.l", tmp_path) == ["optimizer.lr="]
    assert "train.early_stopping.patience=" in complete("nncli train x.yaml --set train.", tmp_path)
    assert complete("nncli list l", tmp_path) == ["layers", "losses"]


def test_completion_can_be_shown_for_each_shell(tmp_path: Path) -> None:
    nncli = Path(sys.executable).with_name("nncli")
    shown = subprocess.run(
        [str(nncli), "--show-completion", "bash"], capture_output=True, text=True, check=True
    )
    assert "_NNCLI_COMPLETE=complete_bash" in shown.stdout
