"""`source: images`: image files in class folders, or listed with their labels in an index
CSV, decoded once by Pillow into one array (N, C, H, W), or (`data.stream`) kept as a list
of files (`ImageFiles`) decoded batch by batch in the data loader's workers; how files are
found, checked and decoded is imagefiles.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from nncli.data import DataParams, Dataset, PathText, Scale, datasets, encode_labels
from nncli.data.imagefiles import ImageFiles, bad_files_text, decode_all, image_files, peek_all
from nncli.data.npy import Streamable, streams
from nncli.errors import NncliError
from nncli.inputs import regular_size

if TYPE_CHECKING:
    from numpy.typing import NDArray

EXTENSIONS = [".png", ".jpg", ".jpeg", ".bmp", ".webp"]

Side = Annotated[int, Field(ge=1, le=65536)]


class Images(Streamable):
    """Images in one subfolder per class (`path`), or listed in a CSV (`index`)."""

    path_fields: ClassVar[tuple[str, ...]] = ("path", "index")

    path: PathText | None = Field(
        default=None, description="a folder with one subfolder of images per class"
    )
    index: PathText | None = Field(
        default=None,
        description="a CSV of image paths (from its folder) and labels, columns path and label",
    )
    size: list[Side] = Field(
        min_length=2, max_length=2, description="[height, width] every image is resized to"
    )
    crop: Literal["center", "none"] = Field(
        default="none", description="center: cut the middle to the size's shape, then resize"
    )
    channels: Literal[1, 3] = Field(default=3, description="1: grayscale, 3: RGB")
    scale: Scale | None = Field(default=1 / 255, gt=0, description="pixels 0..255 -> 0..1")
    standardize: bool = Field(default=False, description="per-pixel statistics of the train split")
    skip_bad: bool = Field(
        default=False, description="leave out unreadable images with a warning (else refuse)"
    )
    extensions: list[str] = Field(
        default=EXTENSIONS, min_length=1, description="the files read as images"
    )
    workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="processes that decode the images: all of them before training (in "
        "memory; from 1,000 images), or each batch (streamed, as DataLoader workers)",
    )
    label_separator: str = Field(
        default=";", min_length=1, description="index: between several labels (multi-label)"
    )

    @model_validator(mode="after")
    def _one_place_and_pillow(self) -> Images:
        if (self.path is None) == (self.index is None):
            raise ValueError("give path (class folders) or index (a CSV of files), one of them")
        from nncli.loggers.extras import installed

        if not installed("PIL"):
            raise PydanticCustomError(
                "missing_extra",
                "source: images needs Pillow, which is not installed (pip install 'nncli[images]')",
            )
        lowered = [e.lower() if e.startswith(".") else f".{e.lower()}" for e in self.extensions]
        object.__setattr__(self, "extensions", lowered)
        return self

    def missing_files(self) -> list[NncliError]:
        """The folder or index CSV, as loading would refuse it (for `nncli validate`)."""
        try:
            if self.path is not None:
                class_folders(Path(self.path))
            else:
                regular_size(Path(str(self.index)), f"data.index: {self.index}")
        except NncliError as exc:
            return [exc]
        return []


def class_folders(folder: Path) -> list[Path]:
    """The class subfolders of `folder`, by name (hidden ones left out)."""
    if not folder.exists():
        raise NncliError(f"data.path: {folder} does not exist; name a folder of class folders")
    if not folder.is_dir():
        raise NncliError(
            f"data.path: {folder} is not a folder; name a folder with one subfolder of images "
            "per class (or give a CSV as data.index)"
        )
    found = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise NncliError(
            f"data.path: {folder} has no subfolders; put each class's images in a subfolder "
            "named after the class"
        )
    return found


def _from_folder(p: Images) -> tuple[list[Path], list[str]]:
    files: list[Path] = []
    labels: list[str] = []
    for folder in class_folders(Path(str(p.path))):
        found = image_files(folder, p.extensions)
        if not found:
            raise NncliError(
                f"data.path: the class folder {folder} holds no images "
                f"({', '.join(p.extensions)}); add some or remove it"
            )
        files += found
        labels += [folder.name] * len(found)
    return files, labels


def _from_index(p: Images) -> tuple[list[Path], list[list[str]]]:
    """The files and labels of the index CSV; paths are from the CSV's folder."""
    from nncli.data.preprocess import lines
    from nncli.inputs import read_csv

    index = Path(str(p.index))
    frame = read_csv(index, "data.index")
    absent = [c for c in ("path", "label") if c not in frame.columns]
    if absent:
        raise NncliError(
            f"data.index: {index} has no column {', '.join(repr(c) for c in absent)} (its "
            f"columns: {', '.join(map(str, frame.columns))}); write a header line path,label"
        )
    for column in ("path", "label"):
        empty = frame[column].isna().to_numpy()
        if empty.any():
            raise NncliError(
                f"data.index: {index} has no {column} on {lines(empty)}; fill it in or remove "
                "the row"
            )
    files: list[Path] = []
    labels: list[list[str]] = []
    for file, label in zip(frame["path"].astype(str), frame["label"], strict=True):
        path = Path(file).expanduser()
        files.append(path if path.is_absolute() else index.parent / path)
        text = str(int(label)) if isinstance(label, float) and label.is_integer() else str(label)
        labels.append([s.strip() for s in text.split(p.label_separator) if s.strip()])
    return files, labels


def _targets(labels: list[list[str]], what: str) -> tuple[NDArray[Any], list[str], bool]:
    """Class indices (one label each) or a 0/1 row per image (several labels anywhere)."""
    import numpy as np

    if all(len(one) == 1 for one in labels):
        y, names = encode_labels(np.asarray([one[0] for one in labels]), what)
        return y, names, False
    from nncli.data.labels import sort_labels

    names = sort_labels(sorted({label for one in labels for label in one}))
    at = {name: i for i, name in enumerate(names)}
    rows = np.zeros((len(labels), len(names)), dtype=np.int64)
    for i, one in enumerate(labels):
        rows[i, [at[label] for label in one]] = 1
    return rows, names, True


@datasets.register("images", params=Images)
def images(p: Images, seed: int) -> Dataset:
    """Image files (PNG, JPEG, BMP, WebP) in class folders or listed in a CSV, resized;
    streamed (decoded batch by batch) where they would not fit in memory (data.stream)."""
    what = f"data.path: {p.path}" if p.path is not None else f"data.index: {p.index}"
    if p.path is not None:
        files, single = _from_folder(p)
        labels = [[label] for label in single]
    else:
        files, labels = _from_index(p)
    size = (p.size[0], p.size[1])
    x: Any = None
    if streams(p, len(files) * p.channels * size[0] * size[1]):
        bad = peek_all(files, p.workers)  # every header now: a bad file is refused up front
    else:
        x, bad = decode_all(files, size, p.crop, p.channels, what, p.workers)
    warnings = []
    if bad:
        text = f"{what}: {bad_files_text(bad, len(files))}"
        if not p.skip_bad or len(bad) == len(files):
            fix = "" if p.skip_bad else ", or set data.skip_bad: true to leave them out"
            raise NncliError(f"{text}; fix or remove them{fix}")
        warnings.append(f"{text}; left out (data.skip_bad)")
        import numpy as np

        unreadable = {path for path, _ in bad}
        keep = np.array([file not in unreadable for file in files])
        x = None if x is None else x[keep]
        labels = [one for one, kept in zip(labels, keep, strict=True) if kept]
        files = [file for file, kept in zip(files, keep, strict=True) if kept]
    y, names, several = _targets(labels, what)
    streamed: Any = ImageFiles(tuple(map(str, files)), size, p.crop, p.channels)
    return Dataset(
        streamed if x is None else x.astype("float32"),  # the files: read batch by batch
        y,
        "multilabel" if several else "classification",
        names,
        target_names=names if several else ["label"],
        warnings=warnings,
    )


def folder_classes(p: DataParams) -> int | None:
    """How many classes a folder of class folders gives (None for an index, or where the
    folder cannot be listed: loading says why)."""
    if not isinstance(p, Images) or p.path is None:
        return None
    try:
        return len(class_folders(Path(p.path)))
    except (NncliError, OSError):
        return None
