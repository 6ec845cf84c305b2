"""One process per run directory: two runs of one config would overwrite each other's checkpoint and result."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_FILE", "RunDirBusyError", "RunDirLock"]

LOCK_FILE = ".lock"


class RunDirBusyError(RuntimeError):
    """Another live process holds the run directory."""


class RunDirLock:
    """An exclusive ``flock`` on ``<directory>/.lock``, which holds the owner's PID.

    The kernel drops the lock when its process dies, so a crash never leaves a directory locked; a clean
    release also removes the file.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`RunDirBusyError` naming the directory and the holder's PID."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunDirBusyError(
                    f"{self.directory} is in use by another run (PID {holder}, lock file {self.path}); wait for "
                    "it to finish or stop it, then run again (it resumes from the last checkpoint)"
                ) from None
            if self._still_linked(fd):
                break
            os.close(fd)  # the holder released and removed the file between our open and flock: retry
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (a no-op when not held)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False
