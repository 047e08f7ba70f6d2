"""`nncli sweep --launcher slurm`: the sweep's workers submitted as Slurm jobs through
submitit, each `nncli sweep --join SWEEP` on the resources of `sweep.slurm`.

NNCLI_SUBMITIT_CLUSTER=local runs the same jobs on this machine through submitit's local
executor (what the tests do: there is no Slurm cluster here)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from nncli.config.sweep import SlurmSpec
from nncli.errors import NncliError
from nncli.sweep.state import Sweep

CLUSTER_ENV = "NNCLI_SUBMITIT_CLUSTER"
STORAGE_ENV = "NNCLI_SWEEP_STORAGE"  # --storage, for the jobs: not in their command line
SLURM = "slurm"  # the sweep folder's subfolder for submitit's files (job logs)
SUBMITIT_MISSING = (
    "--launcher slurm submits the workers through submitit, which is not installed: "
    "pip install 'nncli[slurm]'"
)


def import_submitit() -> Any:
    try:
        return importlib.import_module("submitit")
    except ImportError:
        raise NncliError(SUBMITIT_MISSING) from None


def worker_command(sweep: Sweep, jobs: int, start: str, nproc: int) -> list[str]:
    """What each job runs: a worker that joins the sweep."""
    folder = str(sweep.folder.absolute())
    return [sys.executable, "-m", "nncli", "sweep", "--join", folder, "--jobs", str(jobs),
            "--start", start, "--nproc-per-node", str(nproc), "--format", "csv"]  # fmt: skip


def parameters(settings: SlurmSpec, name: str) -> dict[str, Any]:
    """submitit's parameters from `sweep.slurm` (AutoExecutor's names; `slurm_` ones are
    left out by the local executor)."""
    given = {
        "name": name,
        "timeout_min": settings.time,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": settings.gpus_per_node,
        "cpus_per_task": settings.cpus_per_task,
        "mem_gb": settings.mem_gb,
        "slurm_partition": settings.partition,
        "slurm_account": settings.account,
        "slurm_qos": settings.qos,
        "slurm_constraint": settings.constraint,
        "slurm_additional_parameters": dict(settings.additional) or None,
    }
    return {key: value for key, value in given.items() if value is not None}


def submit(
    sweep: Sweep, jobs: int, start: str, nproc: int, cluster: str | None = None
) -> list[Any]:
    """Submit `sweep.slurm.workers` workers (each running `jobs` trials at once); their
    submitit jobs. `cluster`: slurm, or local (default: NNCLI_SUBMITIT_CLUSTER, else slurm)."""
    submitit = import_submitit()
    settings = SlurmSpec.model_validate(sweep.slurm or {})
    cluster = cluster or os.environ.get(CLUSTER_ENV) or "slurm"
    executor = submitit.AutoExecutor(folder=sweep.folder / SLURM / "%j", cluster=cluster)
    executor.update_parameters(**parameters(settings, f"nncli-sweep-{sweep.name}"))
    if sweep.storage is not None:  # the jobs inherit this environment, not a file
        os.environ[STORAGE_ENV] = sweep.storage
    command = submitit.helpers.CommandFunction(worker_command(sweep, jobs, start, nproc))
    try:
        with executor.batch():
            submitted = [executor.submit(command) for _ in range(settings.workers)]
    except Exception as exc:  # sbatch refused them, or there is no Slurm here
        raise NncliError(f"the workers could not be submitted ({cluster}): {exc}") from None
    return submitted


def wait(submitted: Sequence[Any]) -> list[str]:
    """Wait for every job; a line for each that failed (a worker exits 1 when a trial of
    the sweep did not complete: sweep.json says which)."""
    failures = []
    for job in submitted:
        try:
            job.result()
        except Exception as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()]
            failures.append(f"job {job.job_id}: {lines[-1] if lines else type(exc).__name__}")
    return failures
