"""Streamed tables against the same tables read whole: the columns of a Parquet file (an
index kept by pandas included), the categories of a CSV column numeric in some chunks and
text in others, and where a streamed row's bad value is named."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.data import tablecache, tablechunks, tablestream

SPEC = """\
name: t
seed: 5
data: {{source: {source}, path: {path}, target: label, stream: {stream}{extra}}}
model:
  layers: [{{dense: 4}}, tanh, {{dense: 2}}]
loss: cross_entropy
optimizer: {{name: adam, lr: 0.05}}
train: {{epochs: 1, batch_size: 8, device: cpu}}
metrics: [accuracy]
"""


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NNCLI_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tables"


def loaded(spec: Path) -> tuple[np.ndarray, list[str], dict[str, list[str]]]:
    """The table's inputs (read into memory), feature names and categories."""
    from nncli.config.spec import load_experiment
    from nncli.data.pipeline import load

    s = load_experiment(spec).spec
    data = load(s.data, s.seed, "index")
    return np.array(data.x), list(data.feature_names or []), dict(data.categories or {})


def ids(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    a = rng.integers(-16, 16, n) / 4
    return pd.DataFrame(
        {"id": rng.permutation(n) + 100, "a": a, "label": np.where(a > 0, "up", "down")}
    )


def test_a_named_parquet_index_is_a_column_streamed_in_memory_and_in_predict(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    ids().set_index("id").to_parquet(tmp_path / "t.parquet")
    found = {}
    for stream in ("false", "true"):
        spec = write(SPEC.format(source="parquet", path="t.parquet", stream=stream, extra=""))
        found[stream] = loaded(spec)
    x, names, _ = found["false"]
    assert names == ["a", "id"]  # the index is stored last
    np.testing.assert_array_equal(x[:, 1], ids()["id"])
    np.testing.assert_array_equal(found["true"][0], x)
    assert found["true"][1] == names
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    run = Path(result.output.strip().splitlines()[-1])
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "t.parquet")])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 41


def test_a_csv_column_numeric_in_some_chunks_and_text_in_others_has_the_whole_files_categories(
    write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tablechunks, "CHUNK_ROWS", 4)
    kind = ["1.0", "2.0", "1.0", "2.0", "abc", "2.0", "abc", "1.0"]
    label = ["up", "down"] * 4
    lines = [f"{k},{i / 4},{y}" for i, (k, y) in enumerate(zip(kind, label, strict=True))]
    (tmp_path / "t.csv").write_text("kind,a,label\n" + "\n".join(lines) + "\n")
    found = {}
    for stream in ("false", "true"):
        spec = write(SPEC.format(source="csv", path="t.csv", stream=stream, extra=""))
        found[stream] = loaded(spec)
    assert found["false"][2] == {"kind": ["1.0", "2.0", "abc"]}
    assert found["true"][2] == found["false"][2]
    np.testing.assert_array_equal(found["true"][0], found["false"][0])
    assert found["true"][0][:, :3].argmax(axis=1).tolist() == [0, 1, 0, 1, 2, 1, 2, 0]


@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_a_bad_streamed_row_is_named_as_a_line_or_row_of_the_users_file(
    write: Callable[..., Path], tmp_path: Path, source: str
) -> None:
    from nncli.data.npy import check_finite, source_of
    from nncli.errors import NncliError

    frame = ids()
    for name, part in (("t", frame[:30]), ("v", frame[30:])):
        if source == "csv":
            part.to_csv(tmp_path / f"{name}.csv", index=False)
        else:
            part.to_parquet(tmp_path / f"{name}.parquet", index=False)
    extra = f", val_path: v.{source}"
    spec = write(SPEC.format(source=source, path=f"t.{source}", stream="true", extra=extra))
    from nncli.config.spec import load_experiment
    from nncli.data.pipeline import load

    s = load_experiment(spec).spec
    data = load(s.data, s.seed, "index")
    where = "lines {}, {}" if source == "csv" else "rows {}, {}"
    first = 2 if source == "csv" else 1
    for rows, key, file in (
        ([11, 8], "data.path", "t"),
        ([35, 32, 9], "data.val_path", "v"),  # a row of another file is not counted
    ):
        values = np.zeros((len(rows), 2), dtype=np.float32)
        values[:2, 1] = [np.nan, np.inf]
        with pytest.raises(NncliError) as caught:
            check_finite(values, np.array(rows), source_of(data.x))
        start = 0 if key == "data.path" else 30
        lines = where.format(*(r - start + first for r in sorted(rows[:2])))
        assert str(caught.value).startswith(
            f"{key}: {tmp_path / file}.{source} holds inf, nan on {lines} (a streamed"
        ), str(caught.value)


def test_a_text_column_of_too_many_values_is_refused_at_the_chunk_that_passes_the_limit(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tablechunks, "CHUNK_ROWS", 100)
    read = []
    chunks = tablestream.chunks

    def counted(*args: object, **kwargs: object) -> object:
        for chunk in chunks(*args, **kwargs):  # type: ignore[arg-type]
            read.append(len(chunk))
            yield chunk

    monkeypatch.setattr(tablestream, "chunks", counted)
    n = 2000
    frame = pd.DataFrame({"code": [f"c{i}" for i in range(n)], "a": np.arange(n) / 4})
    frame["label"] = np.where(np.arange(n) % 2 == 0, "up", "down")
    frame.to_csv(tmp_path / "t.csv", index=False)
    spec = write(SPEC.format(source="csv", path="t.csv", stream="true", extra=""))
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert (
        f"column 'code' of {tmp_path / 't.csv'} holds more than data.max_categories 50 distinct "
        "values: exclude it (data.exclude), or raise max_categories to one-hot encode it"
    ) in said, said
    assert read == [100]  # the first chunk passes the limit: nothing more is read


def test_concurrent_builders_wait_for_one_build_and_leftovers_are_removed(
    write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    import threading
    import time

    encode, built = tablestream.encode, []

    def slow(*args: object, **kwargs: object) -> object:
        built.append(1)
        time.sleep(0.5)  # the second builder arrives while the first is writing
        return encode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tablestream, "encode", slow)
    ids().to_csv(tmp_path / "t.csv", index=False)
    spec = write(SPEC.format(source="csv", path="t.csv", stream="true", extra=""))
    xs: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: xs.append(loaded(spec)[0])) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and len(xs) == 2  # one build, reused by the other
    np.testing.assert_array_equal(xs[0], xs[1])
    (first,) = cache.glob("*.npy")
    # a dead builder's temporary file, a live one's, then the file changed: a new cache
    dead = cache / f".{first.name}.999999999.1.tmp"
    live = cache / f".{first.name}.{os.getpid()}.2.tmp"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    ids(41).to_csv(tmp_path / "t.csv", index=False)
    tablecache.release()  # the processes that read the first cache have ended
    loaded(spec)
    (second,) = cache.glob("*.npy")  # the older cache of the same file is gone
    assert second != first
    assert not dead.exists() and live.exists()


@pytest.mark.parametrize("change", ["rows", "stat"])
def test_a_file_that_changes_while_it_is_cached_is_refused_and_nothing_is_cached(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,
    change: str,
) -> None:
    file = tmp_path / "t.csv"
    ids().to_csv(file, index=False)
    encode, survey = tablestream.encode, tablestream.survey

    def meanwhile(*args: object, **kwargs: object) -> object:
        os.utime(file, ns=(1, 1))  # the same bytes written again
        return encode(*args, **kwargs)  # type: ignore[arg-type]

    def more(*args: object, **kwargs: object) -> tablestream.Survey:
        found = survey(*args, **kwargs)  # type: ignore[arg-type]
        # rows the first pass saw that the second does not: a file rewritten with its
        # size and modification time kept
        found.rows["train"] += 5
        return found

    if change == "rows":
        monkeypatch.setattr(tablestream, "survey", more)
    else:
        monkeypatch.setattr(tablestream, "encode", meanwhile)
    spec = write(SPEC.format(source="csv", path="t.csv", stream="true", extra=""))
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    how = "45 rows, then 40" if change == "rows" else "its size or modification time changed"
    assert (
        f"data.path {file} changed while it was read ({how}), so it was not cached; run again "
        "once it is no longer being written"
    ) in said, said
    assert not [p for p in cache.iterdir() if p.name != ".tables.lock"]
    assert not (tmp_path / "runs").exists()


def test_the_table_modules_import_no_private_helper_of_another_module() -> None:
    import ast

    import nncli

    root = Path(nncli.__file__).parent / "data"
    private = []
    for name in ("tablestream.py", "tablecache.py", "parquet.py", "csv.py"):
        for node in ast.walk(ast.parse((root / name).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nncli"):
                private += [f"{name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []
