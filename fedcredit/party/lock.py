"""One process per state directory: an exclusive lock held for the party process's life.

Two processes on one state directory would both append to the audit log (its
hash chain then breaks, and the party refuses to restart on it), both write the
SQLite store, and each would mark the other's running jobs "interrupted". So
:class:`~fedcredit.party.Party` takes ``<state_dir>/party.lock`` with
``flock(LOCK_EX | LOCK_NB)`` *before* it opens anything else there, and a
second process is refused with :class:`~fedcredit.errors.StateLocked` (exit
code 8 of ``fedcredit party serve``). The kernel releases the lock when the
process ends, however it ends (``kill -9`` included), so a stale lock file
never blocks a restart. The file holds the owner's pid, for the operator only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import StateLocked

__all__ = ["StateLock", "LOCK_FILE"]

LOCK_FILE = "party.lock"


class StateLock:
    """An exclusive, non-blocking lock on a party's state directory.

    Parameters
    ----------
    state_dir : path
        The directory; ``party.lock`` is created in it.

    Raises
    ------
    StateLocked
        Another process (or another :class:`Party` in this process) holds it.
    """

    def __init__(self, state_dir: str | os.PathLike):
        self.path = Path(state_dir) / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise StateLocked(
                f"another party process (pid {owner}) is already running on state directory {self.path.parent}; "
                "stop it first (two processes on one state directory would break its audit log)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the lock up (idempotent); the file stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self):  # a Party dropped without stop() must not keep its state dir locked
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    @property
    def held(self) -> bool:
        return self._fd is not None
