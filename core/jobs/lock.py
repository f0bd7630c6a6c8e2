"""The one lock per job folder: an OS lock its worker holds for life, released by the kernel when the worker dies."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from tunedeck.core.errors import RunError

TRIES = 25  # a holder check (below) holds the lock for microseconds: retry briefly before calling it taken
PAUSE_S = 0.02
UNKNOWN_PID = 0  # held, but the holder has not written its pid yet


class JobLock:
    """`flock` on a file inside the job folder. The holder writes its pid into the file so others can name it.

    The lock belongs to the open file, not to a path or a pid: nothing stale survives a crash or `kill -9`.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this process holds it."""
        return self._fd is not None

    def acquire(self, where: str | None = None) -> JobLock:
        """Take the lock for this process until release() or exit; RunError 'already running (pid N)' if taken."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        for attempt in range(TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == TRIES - 1:
                    os.close(fd)
                    pid = self.holder()
                    raise RunError(f"already running (pid {pid if pid else 'unknown'})", where=where,
                                   hint="wait for it to finish, or stop it first") from None
                time.sleep(PAUSE_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def holder(self) -> int | None:
        """The pid holding the lock now (UNKNOWN_PID if it has not written it yet), None when nobody holds it.

        Tests the lock without keeping it: a shared try-lock, released at once.
        """
        if self._fd is not None:
            return os.getpid()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _recorded_pid(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def _recorded_pid(fd: int) -> int:
    """The pid in the lock file; the holder writes it right after locking, so wait a moment for it."""
    for _ in range(TRIES):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(PAUSE_S)
    return UNKNOWN_PID
