"""An IDX file in the wrong key of `source: idx` is named by that key, with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from datafiles import params, tiny_images, write_idx

from nncli import data as datamod
from nncli.errors import NncliError


def _error(section: str) -> str:
    with pytest.raises(NncliError) as info:
        datamod.load(params(section), 0)
    return str(info.value)


def test_labels_given_as_images_name_data_images_and_the_swap(tmp_path: Path) -> None:
    images, labels = tiny_images(12, side=5)
    write_idx(tmp_path / "i", images)
    write_idx(tmp_path / "l", labels)
    write_idx(tmp_path / "ti", images[:4])
    write_idx(tmp_path / "tl", labels[:4])
    expected = (
        f"data.images: {tmp_path / 'l'} holds labels (1-D: 12 values), not images "
        "(N x height x width); swap it with data.labels, so that data.images names the "
        "images file (such as train-images-idx3-ubyte) and data.labels the labels file"
    )
    swapped = f"source: idx\nimages: {tmp_path / 'l'}\nlabels: {tmp_path / 'i'}"
    tests = f"\ntest_images: {tmp_path / 'ti'}\ntest_labels: {tmp_path / 'tl'}"
    assert _error(swapped + tests) == expected  # was blamed on data.test_images
    assert _error(swapped) == expected  # was blamed on data.labels
    twice = f"source: idx\nimages: {tmp_path / 'l'}\nlabels: {tmp_path / 'l'}"
    assert _error(twice) == expected  # trained on the labels as a one-pixel image
    held_out = f"source: idx\nimages: {tmp_path / 'i'}\nlabels: {tmp_path / 'l'}"
    held_out += f"\ntest_images: {tmp_path / 'tl'}\ntest_labels: {tmp_path / 'ti'}"
    assert _error(held_out) == (
        f"data.test_images: {tmp_path / 'tl'} holds labels (1-D: 4 values), not images "
        "(N x height x width); swap it with data.test_labels, so that data.test_images "
        "names the images file (such as train-images-idx3-ubyte) and data.test_labels the "
        "labels file"
    )
