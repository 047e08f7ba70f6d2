"""The README's run folder names every figure a run can draw (engine/run_figures.py)."""

from __future__ import annotations

import re

from conftest import ROOT


def test_the_run_folder_in_the_readme_lists_every_figure() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### The run folder")
    block = readme[start : readme.index("```\n\n", readme.index("```", start) + 3)]
    listed = block[block.index("plots/") : block.index("log.txt")]
    code = (ROOT / "nncli" / "engine" / "run_figures.py").read_text(encoding="utf-8")
    drawn = set(re.findall(r'"(\w+\.png)"', code))
    assert drawn >= {"data.png", "misclassified.png", "filters.png", "confusion_matrix.png"}
    assert sorted(name for name in drawn if name not in listed) == []
