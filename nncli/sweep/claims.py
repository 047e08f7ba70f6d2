"""Which worker runs which trial: `claims/trial-007` in the sweep folder, flock()ed by the
worker that runs the trial and by the trial's own process.

The kernel drops an flock when the last process holding it ends, however it ends (on NFS,
when the client's lease lapses), so a trial whose worker and process are both gone is free
to be taken over, and one whose worker was killed while its trial trains on is not (the
trial's process still holds the claim). Claims are taken only under sweep.lock
(Sweep.sync), so two workers never take the same trial. The files stay: they name their
last holder (host, pid, since when), and no path is ever re-created under a holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from nncli.errors import NncliError
from nncli.runs.files import now

CLAIMS = "claims"
CLAIM_ENV = "NNCLI_SWEEP_CLAIM"  # a forked trial's claim file, which it flocks itself


class Claims:
    """The claims this process holds, trial number -> open descriptor."""

    def __init__(self, sweep_folder: Path) -> None:
        self.folder = sweep_folder / CLAIMS
        self.held: dict[int, int] = {}

    def path(self, number: int) -> Path:
        return self.folder / f"trial-{number:03d}"

    def take(self, number: int) -> bool:
        """Claim a trial (call under sweep.lock): False where a live process holds it."""
        try:
            self.folder.mkdir(exist_ok=True)
            fd = os.open(self.path(number), os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise NncliError(f"cannot claim a trial in {self.folder}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        # shared from here: the trial's process takes its share, and a taker needs both gone
        fcntl.flock(fd, fcntl.LOCK_SH)
        self.held[number] = fd
        return True

    def release(self, number: int) -> None:
        fd = self.held.pop(number, None)
        if fd is not None:
            os.close(fd)


def hold_in_trial() -> None:
    """In a forked trial: share its claim (named in CLAIM_ENV) until this process ends."""
    path = os.environ.get(CLAIM_ENV)
    if not path:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # another worker took the trial over between the fork and now
        raise SystemExit(f"error trial claim {path} was taken over; this attempt stops") from None
    os.set_inheritable(fd, False)
