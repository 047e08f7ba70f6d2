"""Draws the README's pictures again with the real commands: `python docs/make_pictures.py`
(`... report` for the report's screenshot alone).

Each lesson's experiment is trained on the cpu into a temporary runs folder; the figures
the README shows are copied to docs/lessons/, reduced to a 128-colour palette so each
stays well under 100 KB (the plots are flat colours: the reduction is not visible).
docs/report.png is headless Chromium's screenshot of circles' report.html (the browser
offline), 900 px wide.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "lessons"
NNCLI = [sys.executable, "-m", "nncli"]
MAX_BYTES = 100_000
REPORT = ROOT / "docs" / "report.png"
REPORT_WINDOW = (1200, 1500)  # the first screen: status, metrics, the first figures
REPORT_WIDTH = 900

# experiment -> the figures of its run that the README shows
LESSONS = {
    "linear_regression": ["fit"],
    "logistic_regression": ["decision_boundary"],
    "perceptron_and": ["decision_boundary"],
    "xor_perceptron": ["decision_boundary"],
    "xor_mlp": ["decision_boundary"],
    "moons_mlp": ["decision_boundary"],
    "softmax_blobs": ["decision_boundary", "confusion_matrix"],
    "multilabel": ["accuracy", "label_scores"],
    "digits_lenet": ["confusion_matrix"],
}


def keep(figure: Path, name: str, target: Path | None = None, width: int | None = None) -> None:
    target = target or OUT / f"{name}.png"
    with Image.open(figure) as image:
        rgb = image.convert("RGB")
    if width is not None:
        rgb = rgb.resize((width, round(rgb.height * width / rgb.width)), Image.LANCZOS)
    rgb.quantize(colors=128).save(target, optimize=True)
    size = target.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{target} is {size} bytes, over {MAX_BYTES}")
    print(f"{target.relative_to(ROOT)}  {size // 1000} KB")


def report(tmp: Path) -> None:
    """docs/report.png: a circles run's report.html as Chromium draws it, offline."""
    command = [*NNCLI, "train", "experiments/circles.yaml", "--runs-dir", str(tmp / "runs")]
    done = subprocess.run(
        [*command, "--set", "train.device=cpu", "--quiet"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    page = Path(done.stdout.strip().splitlines()[-1]) / "report.html"
    browser = shutil.which("chromium")
    if browser is None:
        raise SystemExit("docs/report.png needs chromium (apt-get install chromium)")
    shot = tmp / "report.png"
    headless = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    offline = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]
    window = f"--window-size={REPORT_WINDOW[0]},{REPORT_WINDOW[1]}"
    subprocess.run(
        [browser, *headless, *offline, f"--screenshot={shot}", window, page.as_uri()],
        check=True,
        capture_output=True,
    )
    keep(shot, "report", REPORT, REPORT_WIDTH)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        report(Path(tmp))
        if sys.argv[1:] == ["report"]:
            return
        runs = Path(tmp) / "runs"
        for experiment, figures in LESSONS.items():
            command = [*NNCLI, "train", f"experiments/{experiment}.yaml", "--runs-dir", str(runs)]
            command += ["--set", "train.device=cpu", "--quiet"]
            done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
            run = Path(done.stdout.strip().splitlines()[-1])  # the last line is the run folder
            for figure in figures:
                keep(run / "plots" / f"{figure}.png", f"{experiment}_{figure}")
        gallery = Path(tmp) / "activations.png"
        subprocess.run(
            [*NNCLI, "plot", "activations", "--out", str(gallery)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        keep(gallery, "activations")


if __name__ == "__main__":
    main()
