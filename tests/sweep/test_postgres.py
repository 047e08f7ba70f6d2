"""A bayes sweep whose study lives in a real PostgreSQL server (`--storage
postgresql://...`), shared by the starter and a --join worker. The server is a throwaway
cluster of this machine's PostgreSQL (Debian's package; `make setup` installs it where
missing, as root on Debian), on a Unix socket in a temporary folder: no TCP port, nothing
left behind. Without PostgreSQL these tests skip, except on CI, where they fail."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sweep import BASE, run_folders, statuses, sweep_json
from test_workers import holders, start, wait_for

pytestmark = pytest.mark.slow


def _tool(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or in Debian's versioned folder."""
    found = shutil.which(name)
    if found is None:
        versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
        found = str(versions[-1]) if versions else None
    return found


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """The URL of a database in a fresh PostgreSQL cluster, stopped and deleted after."""
    pytest.importorskip("psycopg2")
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: make setup installs it (root, Debian)")
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    # the server refuses to run as root: there, it runs as the postgres user
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="nncli-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    run(initdb, "-D", str(data), "-U", "nncli", "--auth=trust", "--no-sync", "-E", "UTF8")
    options = f"-c listen_addresses='' -k {folder} -c fsync=off"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
    try:
        yield f"postgresql+psycopg2://nncli@/postgres?host={folder}"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_a_bayes_sweep_keeps_its_study_in_postgresql_shared_with_a_joined_worker(
    tmp_path: Path, postgres: str
) -> None:
    import optuna

    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE)
    out = tmp_path / "sweep"
    space = ["--method", "bayes", "--range", "optimizer.lr=1e-3:0.3:log", "--trials", "8"]
    starter = start("sweep", str(exp), *space, "--storage", postgres, "--out", str(out))
    wait_for((out / "sweep.json").is_file, "the sweep to be created")
    joined = start("sweep", "--join", str(out), "--storage", postgres)
    for proc in (starter, joined):
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
    recorded = sweep_json(out)
    assert recorded["storage"] == postgres
    assert statuses(out) == ["completed"] * 8
    assert len(set(run_folders(out))) == 8  # each trial run once
    assert len(set(holders(out).values())) == 2  # both workers took trials
    assert {t["host"] for t in recorded["trials"]} == {os.uname().nodename}
    assert not (out / "optuna.journal").exists()
    # Optuna itself reads the study back from the server
    study = optuna.load_study(study_name=out.name, storage=postgres)
    stored = {t.number: (t.state.name, t.value) for t in study.trials}
    assert stored == {t["optuna"]: ("COMPLETE", t["value"]) for t in recorded["trials"]}
    resumed = start("sweep", "--resume", str(out), "-f", "csv")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "8 trials (bayes), 0 to run" in stderr
