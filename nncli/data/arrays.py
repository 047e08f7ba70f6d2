"""Sources of arrays in the user's files: IDX files (MNIST's format, also gzipped) and the
four MNIST files in a folder. Nothing is downloaded. (.npz arrays: npz.py.)"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from nncli.data import (
    Dataset,
    FileParams,
    PathText,
    Scale,
    Split,
    Targets,
    datasets,
    encode_labels,
    stack_splits,
)
from nncli.errors import NncliError
from nncli.inputs import check_memory

if TYPE_CHECKING:
    from numpy.typing import NDArray


# --- idx (MNIST's format) ----------------------------------------------------------------

_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, key: str) -> NDArray[Any]:
    """An IDX file (gzipped or not) as an array; `key` names where the path came from."""
    import numpy as np

    if not path.is_file():
        raise NncliError(f"{key}: {path} does not exist")
    try:
        with path.open("rb") as raw:
            zipped = raw.read(2) == b"\x1f\x8b"
        opener: Any = gzip.open if zipped else Path.open
        with opener(path, "rb") as f:
            header = f.read(4)
            if len(header) < 4 or header[:2] != b"\0\0" or header[2] not in _IDX_TYPES:
                raise NncliError(
                    f"{key}: {path} is not an IDX file (it should start with two zero bytes, a "
                    "type code and the number of dimensions)"
                )
            ndim = header[3]
            dims = [int.from_bytes(f.read(4), "big") for _ in range(ndim)]
            dtype = np.dtype(_IDX_TYPES[header[2]])
            size = math.prod(dims) * dtype.itemsize
            # the array and its float32 copy, refused from the header where they cannot fit
            shape = "x".join(map(str, dims))
            check_memory(
                f"{key}: {path} ({shape})", size + math.prod(dims) * 4, "use a smaller file"
            )
            data = f.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise NncliError(f"{key}: {path} cannot be read: {exc}") from None
    if len(data) < size or ndim == 0:
        raise NncliError(
            f"{key}: {path} is truncated: its header promises {'x'.join(map(str, dims))} "
            f"values ({size:,} bytes) but it holds {len(data):,} bytes"
        )
    return np.frombuffer(data, dtype=dtype).reshape(dims)


def _labels_as_images(path: Path, images_key: str, labels_key: str, n: int) -> str:
    what = f"{images_key}: {path} holds labels (1-D: {n:,} values), not images (N x height x width)"
    if images_key == labels_key:  # mnist: the folder's images file is misnamed
        return f"{what}; put MNIST's images file under that name"
    return (
        f"{what}; swap it with {labels_key}, so that {images_key} names the images file "
        f"(such as train-images-idx3-ubyte) and {labels_key} the labels file"
    )


def _idx_dataset(pairs: dict[str, tuple[Path, str, Path, str]]) -> Dataset:
    """Images and labels of each split (train first), as flat pixel rows and classes."""
    import numpy as np

    xs: dict[str, NDArray[Any]] = {}
    ys: dict[str, NDArray[Any]] = {}
    first: tuple[int, ...] = ()
    for split_name, (images_path, images_key, labels_path, labels_key) in pairs.items():
        images = read_idx(images_path, images_key)
        if images.ndim == 1:  # a labels file: named here, not by a later shape mismatch
            raise NncliError(_labels_as_images(images_path, images_key, labels_key, len(images)))
        labels = read_idx(labels_path, labels_key)
        if labels.ndim != 1 or len(labels) != len(images):
            raise NncliError(
                f"{labels_key}: {labels_path} holds labels shaped {labels.shape} but "
                f"{images_path} has {len(images)} images; they must pair one to one"
            )
        if xs and images.shape[1:] != first:
            raise NncliError(
                f"{images_key}: {images_path} has images of {images.shape[1:]} but the train "
                f"images are {first}"
            )
        first = images.shape[1:]
        xs[split_name] = images.reshape(len(images), -1)
        ys[split_name] = labels
    x, given = stack_splits(xs)
    y, names = encode_labels(np.concatenate(list(ys.values())), "the labels")
    return Dataset(
        x,
        y,
        "classification",
        names,
        target_names=["label"],
        feature_names=[f"pixel{i}" for i in range(x.shape[1])],
        given=given,
    )


class Idx(FileParams):
    path_fields: ClassVar[tuple[str, ...]] = (
        "images",
        "labels",
        "val_images",
        "val_labels",
        "test_images",
        "test_labels",
    )
    held_out_files: ClassVar[dict[str, str]] = {"val": "val_images", "test": "test_images"}

    images: PathText = Field(description="IDX file of images (N, H, W), e.g. *-idx3-ubyte(.gz)")
    labels: PathText = Field(description="IDX file of labels (N,)")
    val_images: PathText | None = None
    val_labels: PathText | None = None
    test_images: PathText | None = None
    test_labels: PathText | None = None
    standardize: bool = Field(
        default=False, description="per-pixel statistics of the train split (usually use scale)"
    )

    @model_validator(mode="after")
    def _pairs(self) -> Idx:
        for split_name in ("val", "test"):
            images = getattr(self, f"{split_name}_images")
            labels = getattr(self, f"{split_name}_labels")
            if (images is None) != (labels is None):
                raise ValueError(f"give {split_name}_images and {split_name}_labels together")
        return self


@datasets.register("idx", params=Idx)
def idx(p: Idx, seed: int) -> Dataset:
    """IDX image and label files (MNIST's format, gzipped or not), as flat pixel rows."""
    pairs = {"train": (Path(p.images), "data.images", Path(p.labels), "data.labels")}
    for split_name in ("val", "test"):
        images = getattr(p, f"{split_name}_images")
        if images is not None:
            labels = getattr(p, f"{split_name}_labels")
            pairs[split_name] = (
                Path(images),
                f"data.{split_name}_images",
                Path(labels),
                f"data.{split_name}_labels",
            )
    return _idx_dataset(pairs)


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_SOURCE = (
    "nncli downloads nothing: get the four files of the MNIST database "
    f"({', '.join(n + '.gz' for pair in MNIST_FILES.values() for n in pair)}) from "
    "http://yann.lecun.com/exdb/mnist/ or one of its mirrors, and put them in"
)


class Mnist(FileParams):
    path_fields: ClassVar[tuple[str, ...]] = ("folder",)

    folder: PathText = Field(description="folder holding MNIST's four IDX files (gzipped or not)")
    split: Split = Split(test=0.0)
    scale: Scale | None = Field(default=1 / 255, gt=0, description="pixels 0..255 -> 0..1")
    standardize: bool = Field(default=False, description="per-pixel statistics of the train split")

    @model_validator(mode="after")
    def _test_is_t10k(self) -> Mnist:
        if self.split.test > 0:
            if "test" in self.split.model_fields_set:
                raise ValueError(
                    "MNIST's test split is its t10k files; hold out validation rows with split.val"
                )
            # `split: {val: 0.1}` leaves test at Split's default; here the files give it
            object.__setattr__(self, "split", self.split.model_copy(update={"test": 0.0}))
        return self

    def missing_files(self) -> list[NncliError]:
        """The first of MNIST's four files that is missing, as loading would refuse it."""
        try:
            for name in (n for pair in MNIST_FILES.values() for n in pair):
                mnist_file(Path(self.folder), name)
        except NncliError as exc:
            return [exc]
        return []


def mnist_file(folder: Path, name: str) -> Path:
    """`name` in `folder`, gzipped or not (also the `train-images.idx3-ubyte` spelling)."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, f"{name}.gz", dotted, f"{dotted}.gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    if not folder.is_dir():
        raise NncliError(f"data.folder: {folder} does not exist; {MNIST_SOURCE} {folder}")
    raise NncliError(
        f"data.folder: {folder / name}(.gz) is missing (MNIST needs all four of its files); "
        f"{MNIST_SOURCE} {folder}"
    )


@datasets.register("mnist", params=Mnist, info=Targets("classification", 10))
def mnist(p: Mnist, seed: int) -> Dataset:
    """MNIST: 60,000 + 10,000 handwritten digits, 28x28, from its four files in a folder."""
    folder = Path(p.folder)
    pairs = {}
    for split_name, (images, labels) in MNIST_FILES.items():
        pairs[split_name] = (
            mnist_file(folder, images),
            "data.folder",
            mnist_file(folder, labels),
            "data.folder",
        )
    return _idx_dataset(pairs)
