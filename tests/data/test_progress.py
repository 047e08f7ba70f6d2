"""Progress of long data work: a bar on a terminal, nothing in a pipe, a log or with -q."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from test_images import write_folder

from nncli import progress


def counted(items: list[int], what: str) -> Iterator[int]:
    """`items` in turn, each advancing a bar of `what` (as decoding a folder counts files)."""
    with progress.measured(what, len(items)) as advance:
        for item in items:
            yield item
            advance(1)


def console(terminal: bool, quiet: bool = False) -> tuple[Console, io.StringIO]:
    text = io.StringIO()
    shown = Console(
        file=text, force_terminal=terminal, force_interactive=terminal, width=100, quiet=quiet
    )
    return shown, text


def test_a_bar_counts_the_items_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    shown, text = console(terminal=True)
    with progress.shown(shown):
        items = list(counted(list(range(300)), "decoding images"))
    assert items == list(range(300))
    assert "decoding images" in text.getvalue()
    assert "/300" in text.getvalue()


@pytest.mark.parametrize(("terminal", "quiet"), [(False, False), (True, True)])
def test_no_bar_in_a_pipe_or_when_quiet(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, quiet: bool
) -> None:
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    shown, text = console(terminal, quiet)
    with progress.shown(shown):
        assert list(counted(list(range(300)), "decoding images")) == list(range(300))
    assert text.getvalue() == ""


def test_short_work_shows_no_bar() -> None:
    shown, text = console(terminal=True)
    with progress.shown(shown):
        assert len(list(counted(list(range(300)), "decoding images"))) == 300
    assert text.getvalue() == ""  # done well within SHOW_AFTER_S


def test_slow_items_show_the_bar_once_they_have_taken_show_after_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Large photos take 0.1-0.3 s each: the bar shows a second in, not after 64 of them."""
    clock = [0.0]
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    for n, bar in ((4, False), (20, True)):  # items 0-3 take 1 s: the bar starts at item 4
        shown, text = console(terminal=True)
        with progress.shown(shown):
            for _ in counted(list(range(n)), "decoding images"):
                clock[0] += 0.25
        assert ("decoding images" in text.getvalue()) is bar, (n, text.getvalue())
        assert (f"/{n}" in text.getvalue()) is bar, (n, text.getvalue())


def train_in_a_terminal(tmp_path: Path, data: str, *extra: str, setup: str = "", **env: str) -> str:
    """`nncli train` on `data` (the data section) with stdout and stderr a terminal (a bar
    is shown at once; `setup` runs first; `env` added to the environment, where TERM is a
    terminal's); what the terminal received."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    file = tmp_path / "e.yaml"
    file.write_text(
        f"data: {data}\nmodel: {{layers: [flatten, dense: 2]}}\nloss: cross_entropy\n"
        "optimizer: {name: sgd, lr: 0.1}\ntrain: {epochs: 1, batch_size: 50}\n"
    )
    script = (
        f"import sys\nfrom nncli import progress\nprogress.SHOW_AFTER_S = 0.0\n{setup}\n"
        f"sys.argv = ['nncli', 'train', {str(file)!r}, '--runs-dir', {str(tmp_path)!r}, "
        f"*{list(extra)!r}]\nfrom nncli.cli.app import main\nmain()\n"
    )
    main, tty = pty.openpty()
    environ = dict(os.environ, NNCLI_CACHE=str(tmp_path / "cache"), TERM="xterm", **env)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=tty, stderr=tty, env=environ)
    os.close(tty)
    received = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's other side is closed: the process is done
            break
        if not chunk:
            break
        received += chunk
    os.close(main)
    assert proc.wait(timeout=120) == 0, received.decode(errors="replace")
    return received.decode(errors="replace")


def images_in_a_terminal(tmp_path: Path, *extra: str, **env: str) -> str:
    """`train_in_a_terminal` on a folder of 200 images."""
    folder = write_folder(tmp_path / "images", n=200, side=8)
    data = f"{{source: images, path: {folder}, size: [8, 8], split: {{test: 0.0}}}}"
    return train_in_a_terminal(tmp_path, data, *extra, **env)


def test_train_shows_the_decoding_on_a_terminal_and_not_with_quiet(tmp_path: Path) -> None:
    shown = images_in_a_terminal(tmp_path / "a")
    assert "decoding images" in shown
    assert "/200" in shown
    assert "decoding images" not in images_in_a_terminal(tmp_path / "b", "-q")


def test_no_bar_where_rich_is_told_the_terminal_is_not_interactive(tmp_path: Path) -> None:
    """A CI log that FORCE_COLOR makes look like a terminal: TTY_INTERACTIVE=0 (rich's
    switch) keeps both bars, the data's and the epochs', out of it; the lines stay."""
    shown = images_in_a_terminal(tmp_path, FORCE_COLOR="1", TTY_INTERACTIVE="0")
    assert "done in" in shown and "epoch 1/1" in shown
    assert "decoding images" not in shown and "\x1b[?25l" not in shown  # (a bar hides the cursor)


@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_a_streamed_table_shows_its_reading_and_its_encoding(tmp_path: Path, source: str) -> None:
    """The survey counts the rows read (a CSV's total is not known ahead, a Parquet file's
    is); the encoding counts them out of the survey's total."""
    pytest.importorskip("pyarrow")
    n = 3000
    frame = pd.DataFrame({"a": np.arange(n) / n, "b": np.arange(n) % 7, "y": np.arange(n) % 2})
    table = tmp_path / f"t.{source}"
    if source == "csv":
        frame.to_csv(table, index=False)
    else:
        frame.to_parquet(table)
    data = f"{{source: {source}, path: {table}, target: y, stream: true}}"
    setup = "from nncli.data import tablechunks\ntablechunks.CHUNK_ROWS = 500"
    shown = train_in_a_terminal(tmp_path, data, setup=setup)
    assert f"reading t.{source}" in shown
    assert "rows" in shown
    assert ("/3,000 rows" in shown.split("encoding")[0]) is (source == "parquet")
    assert f"encoding t.{source}" in shown
    assert "/3,000 rows" in shown.split("encoding")[1]


def test_a_table_read_to_its_end_as_show_after_s_passes_shows_no_bar(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A CSV's rows are not known ahead: its bar starts only while a chunk is still to come,
    never as the last one is done (it would flash and go)."""
    from nncli.data import tablechunks

    monkeypatch.setattr(tablechunks, "CHUNK_ROWS", 10)
    clock = [0.0]
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    table = tmp_path / "t.csv"
    for n, bar in ((20, False), (30, True)):  # each chunk takes 0.6 s: the third is due at 1.2
        pd.DataFrame({"a": range(n)}).to_csv(table, index=False)
        shown, text = console(terminal=True)
        clock[0] = 0.0
        with progress.shown(shown):
            for _ in tablechunks.chunks(table, "data.path", ["a"], is_parquet=False):
                clock[0] += 0.6
        assert ("reading t.csv" in text.getvalue()) is bar, (n, text.getvalue())
        assert (f"{n - 10} rows" in text.getvalue()) is bar, (n, text.getvalue())


def test_a_file_name_in_brackets_is_shown_as_it_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a bar names is plain text: `t[v2].csv` is not read as rich markup (`t.csv`)."""
    from nncli.data import tablechunks

    monkeypatch.setattr(tablechunks, "CHUNK_ROWS", 10)
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    table = tmp_path / "t[v2].csv"
    pd.DataFrame({"a": range(30)}).to_csv(table, index=False)
    shown, text = console(terminal=True)
    with progress.shown(shown):
        assert sum(map(len, tablechunks.chunks(table, "data.path", ["a"], False))) == 30
    assert "reading t[v2].csv" in text.getvalue(), text.getvalue()
