"""A background job's folder inside a run (export/, eval/): request, events, status, log, and starting its worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.errors import RunError
from tunedeck.core.jobs.runs import pid_alive


@dataclass(frozen=True)
class JobFolder:
    root: Path

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def request(self) -> Path:
        return self.root / "request.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def log(self) -> Path:
        return self.root / "worker.log"

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def update_status(self, **values: Any) -> None:
        status = self.read_status()
        status.update(values, updated_at=time.time())
        write_atomic(self.status, json.dumps(status, indent=2, ensure_ascii=False) + "\n")

    def running(self) -> bool:
        status = self.read_status()
        pid = status.get("pid")
        return status.get("status") in ("starting", "running") and bool(pid) and pid_alive(int(pid))

    def spawn(self, mode: str, run_path: Path, what: str) -> subprocess.Popen:
        """Start `python -m tunedeck.core.worker MODE RUN` in its own session, logging to this folder."""
        self.update_status(status="starting", pid=None, started_at=time.time())
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tunedeck.core.worker", mode, str(run_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError as exc:
            self.update_status(status="failed", error=str(exc))
            raise RunError(f"could not start the {what} worker: {exc.strerror}", where=str(run_path)) from None
        finally:
            log.close()
        self.update_status(pid=proc.pid)
        return proc
