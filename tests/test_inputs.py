"""The memory nncli counts on: a memory cgroup's limit (v1 and v2) is what a process in it
has, however much the machine has free."""

from __future__ import annotations

from pathlib import Path

import pytest

from nncli import inputs
from nncli.inputs import cgroup_free


def group(root: Path, membership: str, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    listed = root / "self-cgroup"
    listed.write_text(membership)
    return listed


def test_a_v2_limit_less_its_use_with_the_inactive_file_cache_counted_free(tmp_path: Path) -> None:
    listed = group(
        tmp_path,
        "0::/bench\n",
        {
            "bench/memory.max": "800000000\n",
            "bench/memory.current": "500000000\n",
            "bench/memory.stat": "anon 400000000\ninactive_file 100000000\n",
        },
    )
    assert cgroup_free(tmp_path, listed) == 800_000_000 - 500_000_000 + 100_000_000


def test_a_v1_limit(tmp_path: Path) -> None:
    listed = group(
        tmp_path,
        "5:devices:/\n4:memory:/jobs/bench\n0::/\n",
        {
            "memory/jobs/bench/memory.limit_in_bytes": "750000000\n",
            "memory/jobs/bench/memory.usage_in_bytes": "300000000\n",
            "memory/jobs/bench/memory.stat": "total_rss 250000000\ntotal_inactive_file 40000\n",
        },
    )
    assert cgroup_free(tmp_path, listed) == 750_000_000 - 300_000_000 + 40_000


@pytest.mark.parametrize("limit", ["max\n", "9223372036854771712\n"])
def test_no_limit_is_none(tmp_path: Path, limit: str) -> None:
    listed = group(
        tmp_path,
        "0::/\n",
        {"memory.max": limit, "memory.current": "5\n", "memory.stat": "inactive_file 0\n"},
    )
    assert cgroup_free(tmp_path, listed) is None
    assert cgroup_free(tmp_path, tmp_path / "no-such-file") is None


def test_available_memory_is_the_smaller_of_the_machine_and_the_cgroup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inputs, "cgroup_free", lambda root, membership: 12345)
    assert inputs.available_memory() == 12345
    monkeypatch.setattr(inputs, "cgroup_free", lambda root, membership: None)
    machine = inputs.available_memory()
    assert machine is not None and machine > 12345
