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
INHERITED_FD = "TUNEDECK_JOB_LOCK_FD"  # a starter hands the lock it holds to the worker it starts under this name


class JobLock:
    """`flock` on a file inside the job folder. The holder writes its pid into the file so others can name it.

    The lock belongs to the open file, not to a path or a pid: nothing stale survives a crash or `kill -9`.
    A starter takes it before it starts a worker and hands the open file over (INHERITED_FD), so two starters
    racing for one folder can never both start one.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this process holds it."""
        return self._fd is not None

    def acquire(self, where: str | None = None) -> JobLock:
        """Take the lock for this process until release() or exit; RunError 'already running (pid N)' if taken.

        A worker whose starter handed it this lock adopts it instead."""
        fd = self._inherited()
        if fd is not None:
            return self._own(fd)
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
        return self._own(fd)

    def _own(self, fd: int, pid: int | None = None) -> JobLock:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # already ours: a no-op that proves it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{pid or os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:  # e.g. a full disk: let go, and say where
            os.close(fd)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
        self._fd = fd
        return self

    def _inherited(self) -> int | None:
        """The lock's open file as the starter handed it to this process, if it did (then never to our children)."""
        value = os.environ.get(INHERITED_FD, "")
        if not value.isdigit():
            return None
        fd = int(value)
        try:
            mine, ours = os.fstat(fd), os.stat(self.path)
        except OSError:
            return None
        if (mine.st_dev, mine.st_ino) != (ours.st_dev, ours.st_ino):
            return None
        del os.environ[INHERITED_FD]
        os.set_inheritable(fd, False)
        return fd

    def hand_over(self, env: dict[str, str]) -> tuple[int, ...]:
        """Let a child about to start adopt this lock: sets INHERITED_FD in its env; the fds to pass to it."""
        assert self._fd is not None, "hand_over needs the lock held"
        env[INHERITED_FD] = str(self._fd)
        return (self._fd,)

    def handed_to(self, pid: int) -> None:
        """The child now holds the lock: name it in the lock file and close this process's copy, still locked."""
        assert self._fd is not None, "handed_to needs the lock held"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{pid}\n".encode("ascii"), 0)
        os.close(self._fd)
        self._fd = None

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
