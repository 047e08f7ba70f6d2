"""What `nncli train` spends before and after its epochs: a whole process of it, in a fresh
interpreter, as a shell starts it; and how every command's process ends (exit_now)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# the command in a fresh interpreter; for each full (generation 2) collection, whether torch
# was imported and how many objects were frozen, and whether pyplot was imported, go to
# stderr's last line as JSON
TRAIN = """
import contextlib, gc, json, sys
full = []
def seen(phase, info):
    if phase == "start" and info["generation"] == 2:
        full.append(["torch" in sys.modules, gc.get_freeze_count()])
gc.callbacks.append(seen)
sys.argv = ["nncli", "train", *sys.argv[1:]]
from nncli.cli.app import main
with contextlib.suppress(SystemExit):
    main()
print(json.dumps({"full": full, "pyplot": "matplotlib.pyplot" in sys.modules}), file=sys.stderr)
"""


def test_train_neither_walks_torchs_objects_again_nor_imports_pyplot(
    tiny: Path, tmp_path: Path
) -> None:
    """torch's and torch._dynamo's imports leave millions of objects for the rest of the
    process: frozen, no full collection walks them (there were 6 that did, ~0.9 s of CPU in
    a circles run); and the figures are drawn without pyplot (0.15 s of imports)."""
    runs = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-c", TRAIN, str(tiny), "--runs-dir", str(runs), "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stderr.strip().splitlines()[-1])
    assert counts["pyplot"] is False
    walked = [frozen for torch_imported, frozen in counts["full"] if torch_imported]
    assert all(frozen > 100_000 for frozen in walked), counts["full"]
    (folder,) = runs.iterdir()
    assert sorted(p.name for p in (folder / "plots").iterdir()) == [
        "accuracy.png",
        "confusion_matrix.png",
        "data.png",
        "decision_boundary.png",
        "f1.png",
        "loss.png",
    ]


@pytest.mark.parametrize(("code", "rc", "stderr"), [(None, 0, ""), (3, 3, ""), ("bad", 1, "bad\n")])
def test_a_rank_ends_with_its_exit_code_and_its_output_flushed(
    code: int | str | None, rc: int, stderr: str
) -> None:
    script = (
        "import sys\n"
        "from nncli.cli.app import exit_now\n"
        "sys.stdout.write('written, not yet flushed')\n"
        f"exit_now({code!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (rc, "written, not yet flushed", stderr)


def test_the_process_ends_as_pythons_exit_does_less_the_teardown() -> None:
    # every command ends through exit_now: its threads are waited for and its atexit
    # handlers run (MLflow ends its run there) before the process goes
    script = (
        "import atexit, sys, threading, time\n"
        "from nncli.cli.app import exit_now\n"
        "atexit.register(lambda: print('handler ran', flush=True))\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()\n"
        "exit_now(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "thread done\nhandler ran\n", "")
