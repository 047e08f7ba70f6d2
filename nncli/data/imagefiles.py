"""Image files as `source: images` reads them: finding them in a folder, checking their
headers, decoding one file (Pillow: EXIF orientation, grayscale or RGB, center crop,
resize) or all of them into one array, and `ImageFiles`, a streamed split's inputs decoded
batch by batch in the data loader's workers. Pillow (the `images` extra) is imported where
files are decoded."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nncli.data.npy import DiskSource
from nncli.errors import NncliError
from nncli.inputs import FileProblem, check_memory, regular_size
from nncli.progress import measured
from nncli.workers import context as workers_context
from nncli.workers import leave_signals

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

R = TypeVar("R")

SHOWN_FILES = 10  # bad files named in one message; the rest are counted
PARALLEL_FILES = 1_000  # fewer files are checked or decoded here: workers would cost more
CHECK_PART = 256  # files a worker checks at a time (a header: about 20 us)
DECODE_PART = 32  # files a worker decodes at a time (a small PNG: 80 us; a photo: 0.1 s)


def image_files(folder: Path, extensions: Iterable[str]) -> list[Path]:
    """The files under `folder` (its subfolders too, not linked ones nor unreadable ones)
    with one of `extensions`, hidden ones left out, by path (part by part, as pathlib
    sorts): what folder.rglob finds, listed as strings (os.scandir), which took a fifth of
    the time for a folder of 10,000 images. NncliError where `folder` itself cannot be
    listed (rglob finds nothing there, which reads as a folder without images)."""
    wanted = set(extensions)
    found: list[str] = []
    top = str(folder)
    folders = [top]
    while folders:
        where = folders.pop()
        try:
            listed = list(os.scandir(where))
        except PermissionError as exc:
            if where == top:
                raise NncliError(
                    f"{folder} cannot be read ({exc.strerror}); let this user read it, or "
                    "move it out"
                ) from None
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
    # by parts, as pathlib compares paths (without case on Windows)
    found.sort(key=lambda path: os.path.normcase(path).split(os.sep))  # noqa: PTH206
    return [Path(path) for path in found]


def decode(path: str | Path, size: tuple[int, int], crop: str, channels: int) -> NDArray[np.uint8]:
    """One image file as (channels, height, width) bytes: EXIF orientation applied, converted
    to grayscale or RGB, the middle cut to `size`'s shape (`crop: center`), resized.
    OSError or ValueError where the file is no readable image. Each step works on the
    decoded image itself where it changes nothing (no copy: a fifth of a small PNG's time)."""
    import warnings

    import numpy as np
    from PIL import Image, ImageOps

    height, width = size
    mode = "L" if channels == 1 else "RGB"
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
                ImageOps.exif_transpose(opened, in_place=True)
                image = opened if opened.mode == mode else opened.convert(mode)
                if crop == "center":
                    w, h = image.size
                    keep_w = min(w, round(h * width / height))
                    keep_h = min(h, round(w * height / width))
                    left, top = (w - keep_w) // 2, (h - keep_h) // 2
                    image = image.crop((left, top, left + keep_w, top + keep_h))
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)  # before the file closes
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ValueError(f"too large ({exc})") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def peek(path: str | Path) -> None:
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


def peek_all(files: list[Path], workers: int = 0) -> list[tuple[Path, str]]:
    """The files whose header cannot be read (`peek`), with why; checked by `workers`
    processes where there are many (`in_parts`)."""
    bad: list[tuple[Path, str]] = []
    paths = list(map(str, files))
    for lo, part in in_parts(paths, _peek_part, CHECK_PART, workers, "checking images"):
        bad += [(files[lo + i], why) for i, why in part]
    return bad


def _peek_part(paths: list[str]) -> list[tuple[int, str]]:
    """The files among `paths` whose header cannot be read, by their place, with why."""
    bad = []
    for i, path in enumerate(paths):
        try:
            peek(path)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises SyntaxError on some
            bad.append((i, reason(exc)))
    return bad


def in_parts(
    files: list[str], task: Callable[[list[str]], R], part: int, workers: int, what: str
) -> Generator[tuple[int, R], None, None]:
    """`task` of each part of `files` in turn, with the number of the part's first file:
    parts of `part` files (the first ones shorter: `_starts`) done by `workers` processes where
    there are PARALLEL_FILES or more, else one file at a time here; a bar counts the files
    (`what`). The workers leave Ctrl-C to this process, which ends them where it stops
    before the last part (the parts under way and those queued would take seconds)."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    n = len(files)
    with measured(what, n) as advance:
        if workers == 0 or n < PARALLEL_FILES:
            for lo in range(n):
                yield lo, task(files[lo : lo + 1])
                advance(1)
            return
        starts = _starts(n, part)
        pool = ProcessPoolExecutor(workers, workers_context(), initializer=leave_signals)
        finished = False
        try:
            parts = [files[lo:hi] for lo, hi in zip(starts, [*starts[1:], n], strict=True)]
            for lo, done, size in zip(starts, pool.map(task, parts), map(len, parts), strict=True):
                yield lo, done
                advance(size)
            finished = True
        except BrokenProcessPool:
            raise NncliError(
                f"a worker {what} ended before its files were done (killed, or out of memory?); "
                "set data.workers: 0 to do it in this process",
                key="data.workers",  # located at the key in the experiment file
            ) from None
        finally:
            if not finished:  # Ctrl-C, or a reader that stopped: no part under way waited for
                # (the pool's own processes: its terminate_workers() is Python 3.14's)
                for process in list((pool._processes or {}).values()):
                    process.terminate()
            pool.shutdown(cancel_futures=True)


def _starts(n: int, part: int) -> list[int]:
    """Where each part of `n` files starts: the first parts of 1, 2, 4 ... files, then of
    `part`, so that a bar counts large photos (0.1-0.3 s each) from a second in, not once
    `part` of them are done."""
    starts, lo, size = [], 0, 1
    while lo < n:
        starts.append(lo)
        lo, size = lo + size, min(2 * size, part)
    return starts


@dataclass(frozen=True)
class ImageFiles(DiskSource):
    """A streamed dataset's inputs: its image files, decoded (`decode`, the pixels the
    in-memory path holds) when rows are read. Stands as the dataset's x: its
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

    def __getitem__(self, rows: Any) -> NDArray[np.uint8]:
        """The images `rows` names (a slice or row numbers) decoded, shaped as `shape`."""
        import numpy as np

        numbers = np.arange(len(self.files))[rows]
        return self.read(numbers).reshape(len(numbers), *self.shape[1:])

    def read(self, rows: NDArray[np.int64]) -> NDArray[np.uint8]:
        """The pixels of the images `rows`, flat: bytes, a quarter of their float32 size
        where they cross from a data loader's worker."""
        import numpy as np

        out = np.empty((len(rows), math.prod(self.shape[1:])), np.uint8)
        for i, row in enumerate(rows.tolist()):
            path = self.files[row]
            try:
                out[i] = decode(path, self.side, self.crop, self.channels).reshape(-1)
            except (OSError, ValueError, SyntaxError) as exc:
                raise NncliError(
                    f"{path} cannot be read ({reason(exc)}), though its header could when "
                    "the run started; restore the file and resume the run"
                ) from None
        return out


def decode_all(
    files: list[Path], size: tuple[int, int], crop: str, channels: int, what: str, workers: int = 0
) -> tuple[NDArray[np.uint8], list[tuple[Path, str]]]:
    """Every file decoded into one array (by `workers` processes where there are many:
    `in_parts`), refused first where it would not fit in memory (the bytes and their
    float32 copy); the files that could not be read, with why."""
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
    task = partial(_decode_part, size=size, crop=crop, channels=channels)
    for lo, (pixels, part) in in_parts(
        list(map(str, files)), task, DECODE_PART, workers, "decoding images"
    ):
        out[lo : lo + len(pixels)] = pixels
        bad += [(files[lo + i], why) for i, why in part]
    return out, bad


def _decode_part(
    paths: list[str], size: tuple[int, int], crop: str, channels: int
) -> tuple[NDArray[np.uint8], list[tuple[int, str]]]:
    """The files `paths` decoded (zeros where one cannot be), and those, by place, with why."""
    import numpy as np

    out = np.zeros((len(paths), channels, *size), dtype=np.uint8)
    bad = []
    for i, path in enumerate(paths):
        try:
            out[i] = decode(path, size, crop, channels)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises SyntaxError on some
            bad.append((i, reason(exc)))
    return out, bad


def reason(exc: BaseException) -> str:
    """Why Pillow could not read a file, in a line."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace(" (use ImageFile.LOAD_TRUNCATED_IMAGES = True)", "")


def bad_files_text(bad: list[tuple[Path, str]], n: int) -> str:
    """`2 of 40 images cannot be read: a.png (why), b.jpg (why)` (the first ten named)."""
    shown = "; ".join(f"{path} ({why})" for path, why in bad[:SHOWN_FILES])
    more = f"; and {len(bad) - SHOWN_FILES} more" if len(bad) > SHOWN_FILES else ""
    return f"{len(bad)} of {n} images cannot be read: {shown}{more}"
