"""A job's folder (a run, its export/, its eval/): paths, the only status.json writer, the lock, start and stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.errors import RunError
from tunedeck.core.jobs.lock import JobLock
from tunedeck.core.jobs.process import worker_argv

ACTIVE = ("starting", "running")


@dataclass(frozen=True)
class JobFolder:
    root: Path

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def request_path(self) -> Path:
        return self.root / "request.json"

    @property
    def status_path(self) -> Path:
        return self.root / "status.json"

    @property
    def log_path(self) -> Path:
        return self.root / "worker.log"

    @property
    def lock_path(self) -> Path:
        return self.root / "worker.lock"

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge fields into status.json (atomically: a reader never sees half a file); the new status."""
        status = self.read_status()
        status.update(fields, updated_at=time.time())
        write_atomic(self.status_path, json.dumps(status, indent=2, ensure_ascii=False) + "\n")
        return status

    def effective_status(self) -> str:
        """The status, with a job whose worker died without saying so (or never came up) reported as failed.

        Where status.json and the processes disagree, the lock decides: a worker holding it is running. A job
        stays 'starting' only while its lock is held: the starter holds it until it hands it to the worker."""
        status = self.read_status()
        state = status.get("status", "unknown")
        pid = status.get("pid")
        if state in ("created", *ACTIVE) and pid and not pid_alive(int(pid)):
            return "running" if self.holder() is not None else "failed"
        if state == "starting" and not pid and self.holder() is None:
            return "failed"
        return state

    def holder(self) -> int | None:
        """The pid of the worker holding this folder's lock, None when no worker holds it."""
        return JobLock(self.lock_path).holder()

    def running(self) -> bool:
        """A worker holds the lock, or status.json says one is starting or running and its pid is alive."""
        return self.holder() is not None or self.effective_status() in ACTIVE

    def refuse_if_running(self, what: str, hint: str = "wait for it to finish, or stop it first") -> None:
        """RunError '<what> is already running (pid N)' when a worker holds this folder or is starting."""
        pid = self.holder()
        if pid is None and self.effective_status() in ACTIVE:
            pid = self.read_status().get("pid")
        elif pid is None:
            return
        raise RunError(f"{what} is already running" + (f" (pid {pid})" if pid else " (starting)"),
                       where=str(self.root), hint=hint)

    def lock(self) -> JobLock:
        """Take this folder's lock for the calling process (held until release or exit)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return JobLock(self.lock_path).acquire(where=str(self.root))

    def spawn(self, mode: str, *args: str | Path, **status: Any) -> subprocess.Popen:
        """Start `python -m tunedeck.core.worker MODE ARGS...` in its own session, so it outlives the terminal;
        its output goes to worker.log.

        Refused when a worker holds the folder. This process takes the lock first and hands it to the worker, so
        of two starts racing for one folder the second is refused. status.json says 'starting' before the child
        exists; from then on only the worker writes it.
        """
        self.refuse_if_running(f"the {mode} job")
        lock = self.lock()
        try:
            self.update_status(status="starting", pid=None, started_at=time.time(), **status)
            proc = self._start(mode, args, lock)
        except BaseException:
            lock.release()
            raise
        lock.handed_to(proc.pid)
        return proc

    def _start(self, mode: str, args: tuple[str | Path, ...], lock: JobLock) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(worker_argv(mode, *args), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, env=env, pass_fds=lock.hand_over(env))
        except OSError as exc:
            self.update_status(status="failed", error=f"could not start the worker: {exc}")
            raise RunError(f"could not start the {mode} worker: {exc.strerror}", where=str(self.root)) from None
        finally:
            log.close()

    def stop(self, now: bool = False, pid: int | None = None) -> bool:
        """SIGTERM (stop after the current step or batch) or SIGKILL (now) to the worker and its process group.

        The worker is the lock's holder, else the pid in status.json; `pid` names a worker the caller has just
        started, before it could write either. False when no worker is alive.
        """
        target = pid or self.holder() or self.read_status().get("pid")
        if not target or not pid_alive(int(target)):
            return False
        return signal_process(int(target), signal.SIGKILL if now else signal.SIGTERM)


def signal_process(pid: int, signum: int) -> bool:
    """Signal a detached worker's whole process group (a foreground job's process alone); False if it is gone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True
