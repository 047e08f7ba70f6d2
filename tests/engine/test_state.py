"""Checkpoints: saved whole or not at all (a full disk keeps the previous one), and
damaged ones found by their checksums before torch reads them."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest
import torch
from conftest import info
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.engine.state import verify_checkpoint
from nncli.errors import NncliError
from nncli.runs import record
from nncli.runs.files import write_failed
from nncli.runs.lock import LOCK


def test_a_disk_full_at_a_checkpoint_keeps_the_previous_one(
    runner: CliRunner, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nncli.loggers.run_folder

    real_write = nncli.loggers.run_folder.write_bytes_atomic
    epochs = iter(range(1, 100))

    def write(path: Path, data: bytes) -> None:
        if path.name == "last.pt" and next(epochs) == 2:  # the disk is full at epoch 2's
            raise write_failed(path, OSError(errno.ENOSPC, "No space left on device"))
        real_write(path, data)

    monkeypatch.setattr(nncli.loggers.run_folder, "write_bytes_atomic", write)
    result = runner.invoke(app, ["train", str(tiny), "--runs-dir", str(tmp_path / "runs")])
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert result.stderr.strip() == (
        f"error cannot write {folder}/checkpoints/last.pt: No space left on device (the disk "
        f"is full; free some space); the run is marked failed: {folder}. Its checkpoints are "
        f"kept as last saved; once there is room, continue it with: nncli resume {folder}"
    )
    done = info(folder)
    assert done["status"] == "failed"
    assert str(done["error"]).startswith(f"cannot write {folder}/checkpoints/last.pt")
    last = folder / "checkpoints" / "last.pt"
    verify_checkpoint(last)
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the previous one, whole
    assert not list(folder.rglob(".*.tmp"))
    assert not (folder / LOCK).exists()

    resumed = runner.invoke(app, ["resume", str(folder), "-q"])  # once there is room
    assert resumed.exit_code == 0, resumed.output
    assert info(folder)["status"] == "completed"
    assert [r["epoch"] for r in record.read_metrics(folder)] == [1.0, 2.0, 3.0]


def same(a: object, b: object) -> bool:
    """Equal checkpoints: nested dicts, lists, tensors and plain values."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_flipped_bytes_anywhere_in_a_checkpoint_are_found(checkpoint: Path) -> None:
    verify_checkpoint(checkpoint)
    raw = checkpoint.read_bytes()
    original = torch.load(io.BytesIO(raw), weights_only=True)
    # every 97th byte, one at a time: headers, the pickle, the tensors, the directory
    found = 0
    for at in range(0, len(raw), 97):
        flipped = bytearray(raw)
        flipped[at] ^= 0x10
        checkpoint.write_bytes(bytes(flipped))
        try:
            verify_checkpoint(checkpoint)
        except NncliError as exc:
            assert str(exc).startswith(f"{checkpoint} is damaged")
            found += 1
            continue
        # a byte zip does not checksum (padding, the end record): torch refuses the file,
        # which load_checkpoint reports, or it loads what was saved
        try:
            loaded = torch.load(checkpoint, weights_only=True)
        except RuntimeError:
            continue
        assert same(loaded, original), at
    assert found > len(range(0, len(raw), 97)) * 3 // 4
    for size in (0, 100, len(raw) // 2, len(raw) - 1):
        checkpoint.write_bytes(raw[:size])
        with pytest.raises(NncliError, match=r"is damaged \(not a whole checkpoint"):
            verify_checkpoint(checkpoint)


def test_resume_and_show_refuse_a_checkpoint_with_flipped_bytes(
    runner: CliRunner, checkpoint: Path
) -> None:
    raw = bytearray(checkpoint.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # inside the tensors
    checkpoint.write_bytes(bytes(raw))
    folder = checkpoint.parent.parent
    for args in (["show", str(folder), "--weights"], ["resume", str(folder), "--epochs", "5"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"{checkpoint} is damaged" in result.stderr
