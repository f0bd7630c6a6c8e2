"""Run directories: creating them, their status file, listing them, and starting their workers."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import Config
from tunedeck.core.config_files import dump_config
from tunedeck.core.errors import RunError

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ACTIVE = ("created", "starting", "running")
STARTUP_GRACE_S = 120  # a worker that has not written its pid by then never started


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "worker.log"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        status = self.read_status()
        status.update(fields, updated_at=time.time())
        write_atomic(self.status_path, json.dumps(status, indent=2, ensure_ascii=False) + "\n")
        return status

    def load_config(self) -> Config:
        from tunedeck.core.config_files import load_config

        return load_config(files=[self.config_path])

    def effective_status(self) -> str:
        """The status, with a run whose worker died without saying so reported as failed."""
        status = self.read_status()
        state = status.get("status", "unknown")
        pid = status.get("pid")
        if state in ACTIVE and pid and not pid_alive(int(pid)):
            return "failed"
        if state == "starting" and not pid and time.time() - status.get("updated_at", 0) > STARTUP_GRACE_S:
            return "failed"
        return state


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


def new_run_id(label: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"


def run_dir(runs_root: Path, run_id: str) -> RunDir:
    """The run directory for an id, refusing ids that would leave the runs root."""
    if not RUN_ID.match(run_id):
        raise RunError(f"invalid run id '{run_id}'", hint="letters, digits, '.', '_' and '-' only")
    path = (runs_root / run_id).resolve()
    if path.parent != runs_root.resolve():
        raise RunError(f"run id '{run_id}' escapes the runs root", where=str(runs_root))
    return RunDir(path)


def find_run(runs_root: Path, run_id: str) -> RunDir:
    run = run_dir(runs_root, run_id)
    if not run.config_path.is_file():
        known = [r.run_id for r in list_runs(runs_root)][-5:]
        raise RunError(f"no run '{run_id}'", where=str(runs_root),
                       hint=f"recent runs: {', '.join(known)}" if known else "the runs root is empty")
    return run


def create_run(runs_root: Path, config: Config, label: str, preset: str | None = None) -> RunDir:
    """A new private run directory holding the fully resolved config and a 'created' status."""
    runs_root.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        run = run_dir(runs_root, new_run_id(label))
        try:
            run.path.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    else:
        raise RunError("could not allocate a run id", where=str(runs_root))
    write_atomic(run.config_path, dump_config(config))
    run.update_status(
        status="created", run_id=run.run_id, preset=preset, base_model=config.model.name_or_path,
        created_at=time.time(),
    )
    return run


def list_runs(runs_root: Path) -> list[RunDir]:
    """Every run under the root, oldest first."""
    if not runs_root.is_dir():
        return []
    runs = [RunDir(p) for p in runs_root.iterdir() if p.is_dir() and (p / "config.yaml").is_file()]
    return sorted(runs, key=lambda r: (r.read_status().get("created_at", 0), r.run_id))


def start_worker(run: RunDir, mode: str = "train", extra: list[str] = ()) -> subprocess.Popen:
    """Start the worker for a run in its own session, so it outlives the terminal that started it."""
    if run.effective_status() in ("starting", "running"):
        raise RunError(f"run '{run.run_id}' is already running", where=str(run.path),
                       hint="attach to it, or stop it first")
    # Written before the child exists: from then on only the worker writes status.json.
    run.update_status(status="starting", pid=None, host=os.uname().nodename, started_at=time.time())
    log = open(run.log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tunedeck.core.worker", mode, str(run.path), *extra],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except OSError as exc:
        run.update_status(status="failed", error=f"could not start the worker: {exc}")
        raise RunError(f"could not start the worker: {exc.strerror}", where=str(run.path)) from None
    finally:
        log.close()


def resume_run(run: RunDir) -> subprocess.Popen:
    """Restart a stopped or failed run's worker from its newest complete checkpoint."""
    from tunedeck.core.training.checkpoints import checkpoint_dirs

    state = run.effective_status()
    if state in ("starting", "running"):
        raise RunError(f"run '{run.run_id}' is already running", where=str(run.path), hint="attach to it instead")
    if state == "completed":
        raise RunError(f"run '{run.run_id}' already completed", where=str(run.path),
                       hint="start a new run to train further")
    if not checkpoint_dirs(run.checkpoints):
        raise RunError(f"run '{run.run_id}' has no checkpoint to resume from", where=str(run.checkpoints),
                       hint=f"start it again with: tunedeck train {run.config_path}")
    return start_worker(run, "train", extra=["--resume"])


def stop_worker(run: RunDir, now: bool = False, pid: int | None = None) -> bool:
    """Ask a run's worker to stop at the next step boundary (SIGTERM), or at once (SIGKILL)."""
    return signal_worker(pid or run.read_status().get("pid"), now)


def signal_worker(pid: int | None, now: bool = False) -> bool:
    """SIGTERM (or SIGKILL) a detached worker's whole process group; False when it is not running."""
    if not pid or not pid_alive(int(pid)):
        return False
    try:
        os.killpg(int(pid), signal.SIGKILL if now else signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def delete_run(run: RunDir) -> None:
    """Remove a run folder; refuses a run whose worker is still alive."""
    state = run.effective_status()
    if state in ("starting", "running"):
        raise RunError(f"run '{run.run_id}' is {state}", where=str(run.path), hint="stop it first")
    shutil.rmtree(run.path)
