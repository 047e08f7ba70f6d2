"""`source: images`: image files in class folders, or listed with their labels in an index
CSV, decoded once by Pillow into one array (N, C, H, W), or (`data.stream`) kept as a list
of files (`ImageFiles`) decoded batch by batch in the data loader's workers. Pillow (the
`images` extra) is imported where files are decoded; `decode` reads one file either way."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from nncli.data import DataParams, Dataset, PathText, Scale, datasets, encode_labels
from nncli.data.npy import DiskSource, Streamable, streams
from nncli.errors import NncliError
from nncli.inputs import FileProblem, check_memory, regular_size

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

EXTENSIONS = [".png", ".jpg", ".jpeg", ".bmp", ".webp"]
SHOWN_FILES = 10  # bad files named in one message; the rest are counted

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


def image_files(folder: Path, extensions: Iterable[str]) -> list[Path]:
    """The files under `folder` (its subfolders too, not linked ones nor unreadable ones)
    with one of `extensions`, hidden ones left out, by path (part by part, as pathlib
    sorts): what folder.rglob finds, listed as strings (os.scandir), which took a fifth of
    the time for a folder of 10,000 images."""
    wanted = set(extensions)
    found: list[str] = []
    folders = [str(folder)]
    while folders:
        try:
            listed = list(os.scandir(folders.pop()))
        except PermissionError:
            continue
        for entry in listed:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
            elif (
                not entry.name.startswith(".")
                and os.path.splitext(entry.name)[1].lower() in wanted  # noqa: PTH122 (strings)
                and entry.is_file()
            ):
                found.append(entry.path)
    found.sort(key=lambda path: path.split(os.sep))  # noqa: PTH206 (strings, as said)
    return [Path(path) for path in found]


def decode(path: Path, size: tuple[int, int], crop: str, channels: int) -> NDArray[np.uint8]:
    """One image file as (channels, height, width) bytes: EXIF orientation applied, converted
    to grayscale or RGB, the middle cut to `size`'s shape (`crop: center`), resized.
    OSError or ValueError where the file is no readable image."""
    import warnings

    import numpy as np
    from PIL import Image, ImageOps

    height, width = size
    try:
        regular_size(path, str(path))  # a pipe or a device named in an index: never opened
    except FileProblem as exc:
        raise OSError(exc.reason) from None
    with warnings.catch_warnings():
        # a decompression bomb is a bad file, never a warning that tests turn into errors
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as opened:
                opened.load()  # a truncated file fails here, not later
                image = ImageOps.exif_transpose(opened)
                image = image.convert("L" if channels == 1 else "RGB")
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ValueError(f"too large ({exc})") from None
    if crop == "center":
        w, h = image.size
        keep_w, keep_h = min(w, round(h * width / height)), min(h, round(w * height / width))
        left, top = (w - keep_w) // 2, (h - keep_h) // 2
        image = image.crop((left, top, left + keep_w, top + keep_h))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def peek(path: Path) -> None:
    """What a streamed run checks of each file before it starts: a regular file whose header
    Pillow reads as an image of a size it accepts (the pixels are not decoded: a file
    truncated past its header is found when its batch is read). OSError or ValueError."""
    import warnings

    from PIL import Image

    try:
        regular_size(path, str(path))
    except FileProblem as exc:
        raise OSError(exc.reason) from None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path):
                pass
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ValueError(f"too large ({exc})") from None


def peek_all(files: list[Path]) -> list[tuple[Path, str]]:
    """The files whose header cannot be read (`peek`), with why."""
    bad: list[tuple[Path, str]] = []
    for file in files:
        try:
            peek(file)
        except (OSError, ValueError, SyntaxError) as exc:
            bad.append((file, _reason(exc)))
    return bad


@dataclass(frozen=True)
class ImageFiles(DiskSource):
    """A streamed dataset's inputs: its image files, decoded (`decode`, the pixels the
    in-memory path holds) as float32 when rows are read. Stands as the dataset's x: its
    shape is (N, C, H, W), or (N, C*H*W) once `reshape`d flat as data.pipeline lays x out."""

    files: tuple[str, ...]
    side: tuple[int, int]  # [height, width]
    crop: str
    channels: int
    flat: bool = False

    @property
    def row_bytes(self) -> int:  # type: ignore[override]
        return self.channels * self.side[0] * self.side[1] * 4  # decoded, float32

    @property
    def shape(self) -> tuple[int, ...]:
        one = (self.channels, *self.side)
        return (len(self.files), math.prod(one)) if self.flat else (len(self.files), *one)

    def __len__(self) -> int:
        return len(self.files)

    def reshape(self, n: int, width: int) -> ImageFiles:
        """Flat rows (N, C*H*W), as data.pipeline lays every source's x out."""
        assert (n, width) == (len(self.files), -1)
        return replace(self, flat=True)

    def __getitem__(self, rows: Any) -> NDArray[np.float32]:
        """The images `rows` names (a slice or row numbers) decoded, shaped as `shape`."""
        import numpy as np

        numbers = np.arange(len(self.files))[rows]
        return self.read(numbers).reshape(len(numbers), *self.shape[1:])

    def read(self, rows: NDArray[np.int64]) -> NDArray[np.float32]:
        import numpy as np

        out = np.empty((len(rows), math.prod(self.shape[1:])), np.float32)
        for i, row in enumerate(rows.tolist()):
            path = Path(self.files[row])
            try:
                out[i] = decode(path, self.side, self.crop, self.channels).reshape(-1)
            except (OSError, ValueError, SyntaxError) as exc:
                raise NncliError(
                    f"{path} cannot be read ({_reason(exc)}), though its header could when "
                    "the run started; restore the file and resume the run"
                ) from None
        return out


def decode_all(
    files: list[Path], size: tuple[int, int], crop: str, channels: int, what: str
) -> tuple[NDArray[np.uint8], list[tuple[Path, str]]]:
    """Every file decoded into one array, refused first where it would not fit in memory
    (the bytes and their float32 copy); the files that could not be read, with why."""
    import numpy as np

    shape = (len(files), channels, *size)
    n_values = len(files) * channels * size[0] * size[1]
    check_memory(
        f"{what} ({len(files):,} images of {channels}x{size[0]}x{size[1]})",
        n_values * 5,
        "use a smaller data.size or fewer images, or set data.stream: true",
    )
    out = np.zeros(shape, dtype=np.uint8)
    bad: list[tuple[Path, str]] = []
    for i, file in enumerate(files):
        try:
            out[i] = decode(file, size, crop, channels)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises SyntaxError on some
            bad.append((file, _reason(exc)))
    return out, bad


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace(" (use ImageFile.LOAD_TRUNCATED_IMAGES = True)", "")


def bad_files_text(bad: list[tuple[Path, str]], n: int) -> str:
    """`2 of 40 images cannot be read: a.png (why), b.jpg (why)` (the first ten named)."""
    shown = "; ".join(f"{path} ({why})" for path, why in bad[:SHOWN_FILES])
    more = f"; and {len(bad) - SHOWN_FILES} more" if len(bad) > SHOWN_FILES else ""
    return f"{len(bad)} of {n} images cannot be read: {shown}{more}"


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
        bad = peek_all(files)  # every header now, so a bad file is refused before training
    else:
        x, bad = decode_all(files, size, p.crop, p.channels, what)
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
