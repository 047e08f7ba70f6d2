"""Write scikit-learn's 8x8 digits (1,797 images) as PNG files, one folder per class:
data/digits_folder/<digit>/NNNN.png at the repository's top, or under the folder given.

    python scripts/make_digits_folder.py [FOLDER]

experiments/digits_folder.yaml trains on them (`source: images`). The digits' 17 grey levels
(0..16) become 0..255, so nothing is lost; an existing folder is refused, never overwritten.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

DEFAULT = Path(__file__).resolve().parent.parent / "data" / "digits_folder"


def write_digits(folder: Path) -> int:
    """The digits as PNG files under `folder` (which must not exist); how many were written."""
    digits = load_digits()
    folder.mkdir(parents=True)
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        class_folder = folder / str(label)
        class_folder.mkdir(exist_ok=True)
        grey = np.round(pixels * 255 / 16).astype(np.uint8)
        Image.fromarray(grey, mode="L").save(class_folder / f"{i:04d}.png")
    return len(digits.images)


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else DEFAULT
    if folder.exists():
        print(f"{folder} exists already; remove it to write the digits again", file=sys.stderr)
        return 2
    n = write_digits(folder)
    print(f"wrote {n} PNG files to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
