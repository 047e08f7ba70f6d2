"""The host holds a data set once: its files are read into one array a chunk at a time,
and large splits are rearranged in place rather than gathered into copies."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.data import encode_labels, npz, pipeline
from nncli.data.labels import label_strings, sort_labels
from nncli.engine.prepare import prepare
from nncli.errors import NncliError


def _npz(folder: Path, rows: int, width: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, width)).astype(np.float32)
    y = rng.integers(0, 3, size=rows)
    path = folder / f"d{seed}.npz"
    np.savez(path, x=x, y=y)
    return path


def _spec(path: Path, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        seed: 3
        data: {{source: npz, path: {path}{extra}, split: {{val: 0.2, test: 0.2}}}}
        model: {{layers: [dense: 3]}}
        loss: cross_entropy
        train: {{epochs: 1, batch_size: 16, device: cpu}}
        """)


def test_large_splits_are_views_of_one_array_holding_each_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _npz(tmp_path, 500, 64)  # rows of 256 bytes
    spec = validate(yamlio.loads(_spec(path), "exp.yaml"))
    copied = prepare(spec).splits
    monkeypatch.setattr(pipeline, "IN_PLACE_BYTES", 0)  # as if the data were large
    viewed = prepare(spec).splits
    (train, _), (val, _), (test, _) = viewed["train"], viewed["val"], viewed["test"]
    # one block of rows: train, then val, then test
    assert train.data_ptr() + train.nbytes == val.data_ptr()
    assert val.data_ptr() + val.nbytes == test.data_ptr()
    assert {name: len(x) for name, (x, _) in viewed.items()} == {
        "train": 300,
        "val": 100,
        "test": 100,
    }
    for name, (x, y) in copied.items():  # the same rows, in the same order, as gathered
        assert torch.equal(viewed[name][0], x)
        assert torch.equal(viewed[name][1], y)


def test_permute_rows_applies_the_permutation_in_place() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(257, 5)).astype(np.float32)
    for order in (rng.permutation(257), np.arange(257), np.arange(257)[::-1].copy()):
        y = x.copy()
        pipeline.permute_rows(y, order)
        assert np.array_equal(y, x[order])


def test_an_npz_read_in_chunks_equals_the_file_and_names_bad_rows_of_later_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(npz, "_CHUNK_BYTES", 64)  # rows of 32 bytes: two a chunk
    x = np.arange(80, dtype=np.float64).reshape(10, 8)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(10) % 2)
    out = np.empty((10, 8), dtype=np.float32)
    npz._read_inputs(tmp_path / "a.npz", "x", out)
    assert np.array_equal(out, x.astype(np.float32))
    x[7, 3], x[9, 0] = np.nan, 1e39
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(10) % 2)
    with pytest.raises(Exception) as caught:
        npz._read_inputs(tmp_path / "b.npz", "x", out)
    assert str(caught.value) == (
        f"{tmp_path / 'b.npz'}: 'x' holds 1e+39, nan on rows 7, 9; inputs and targets must "
        "be finite numbers within float32's range (±3.4e38)"
    )


@pytest.mark.parametrize(
    "labels",
    [
        np.array([3, 10, 2, 10, -1]),
        np.array([2.0, 10.0, -0.0, 0.0, 1e20]),
        np.array([7, 7, 7], dtype=np.uint8),
        np.array(["b", "a", "10", "2"]),
        np.array(["cat", 3, 2.0, "dog"], dtype=object),
    ],
)
def test_numeric_labels_encode_as_the_text_labels_do(labels: np.ndarray) -> None:
    import pandas as pd

    codes, names = encode_labels(labels, "y")
    text = label_strings(pd.Series(labels)).tolist()
    assert names == sort_labels(sorted(set(text)))
    assert [names[c] for c in codes] == text


PEAK = """\
import resource, sys
import numpy as np, torch
from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine.prepare import prepare
from nncli.errors import NncliError
spec = validate(yamlio.loads(sys.stdin.read(), "exp.yaml"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
p = prepare(spec)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, "pandas" in sys.modules)
"""


@pytest.mark.slow
def test_preparing_an_npz_peaks_near_one_copy_of_its_inputs(tmp_path: Path) -> None:
    # 96 MiB of float32 inputs in two files; before: about 4.5 copies at the peak (the
    # files' arrays, their float64 range check, the stacked copy, the gathered splits)
    train, test = _npz(tmp_path, 20_000, 1024, 0), _npz(tmp_path, 4_576, 1024, 1)
    text = _spec(train, f", test_path: {test}").replace(", test: 0.2", "")
    result = subprocess.run(
        [sys.executable, "-c", PEAK], input=text, capture_output=True, text=True, check=True
    )
    grown, pandas = result.stdout.split()
    data = 24_576 * 1024 * 4
    assert int(grown) < 1.25 * data, f"{int(grown) / data:.2f} x the inputs"
    assert pandas == "False"  # numeric labels need no pandas (about 100 MB of its own)


def test_missing_labels_are_refused() -> None:
    with pytest.raises(NncliError, match=r"^y has missing labels$"):
        encode_labels(np.array(["a", None, "b"], dtype=object), "y")
    with pytest.raises(NncliError, match=r"^y has missing labels$"):
        encode_labels(np.array([1.0, np.nan]), "y")
