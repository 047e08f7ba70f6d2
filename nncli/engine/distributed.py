"""Multi-process training under torch.distributed: who this process is, the launcher that
`nncli train --nproc-per-node N` uses, and the two collectives the engine needs.

Each rank trains on its share of every batch of the same permutation; metric totals are
summed across ranks once per epoch; rank 0 alone creates and writes the run folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nncli.errors import NncliError

if TYPE_CHECKING:
    import torch

# where rank 0 records its run folder, so a launcher can mark the run failed if a rank dies
RUN_RECORD = "NNCLI_RUN_RECORD"
# "off": the run draws no figures (a sweep's trials: the sweep draws its best one's)
PLOTS_ENV = "NNCLI_PLOTS"


@dataclass(frozen=True)
class Rank:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def current() -> Rank:
    """The rank torchrun gave this process (from its environment variables)."""
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Rank()
        return Rank(int(env["RANK"]), world, int(env.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise NncliError(
            f"WORLD_SIZE={env.get('WORLD_SIZE')!r}, RANK={env.get('RANK')!r} and "
            f"LOCAL_RANK={env.get('LOCAL_RANK')!r} do not name a process of a job; start the "
            "processes with torchrun (or nncli train --nproc-per-node N), or unset WORLD_SIZE"
        ) from None


def is_rank() -> bool:
    """Whether this process is one of several of a job (False where the variables that
    would say so are malformed: the command that needs them says why)."""
    try:
        return current().distributed
    except NncliError:
        return False


def init(rank: Rank, device_type: str) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPUs."""
    import torch.distributed as dist

    if rank.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")


def finish() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over every rank (the epoch's metric totals); itself when alone."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def share(value: str) -> str:
    """Rank 0's `value` on every rank (the run folder's path)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def launch(nproc: int, args: list[str], record: str) -> int:
    """Run `nncli ARGS` as `nproc` processes through torch's own launcher; its exit code."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "nncli",
        *args,
    ]
    env = {
        **os.environ,
        RUN_RECORD: record,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    return subprocess.run(command, env=env, check=False).returncode
