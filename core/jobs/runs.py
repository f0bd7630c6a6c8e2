"""Run folders: the run's own paths, creating, finding, listing, starting, resuming and deleting runs."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import Config
from tunedeck.core.config_files import dump_config, load_config
from tunedeck.core.errors import RunError
from tunedeck.core.jobs.folder import JobFolder
from tunedeck.core.training.checkpoints import checkpoint_dirs

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class RunDir(JobFolder):  # root: runs/<id>
    """A training run's folder: the job folder plus the run's config, checkpoints and adapter."""

    @property
    def path(self) -> Path:
        """The run folder (the job folder's root)."""
        return self.root

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    def load_config(self) -> Config:
        return load_config(files=[self.config_path])

    def read_only(self) -> RunDir:
        """The run as ranks other than 0 of a multi-GPU run see it: they never write status.json."""
        return ReadOnlyRunDir(self.root)


@dataclass(frozen=True)
class ReadOnlyRunDir(RunDir):
    def update_status(self, **fields: Any) -> dict[str, Any]:
        return self.read_status()


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
    runs = [RunDir(p) for p in runs_root.iterdir()  # a symlink is not listed: run_dir refuses to open one
            if not p.is_symlink() and p.is_dir() and (p / "config.yaml").is_file()]
    return sorted(runs, key=lambda r: (r.read_status().get("created_at", 0), r.run_id))


def start_worker(run: RunDir, mode: str = "train", extra: list[str] = ()) -> subprocess.Popen:
    """Start the worker for a run in its own session, so it outlives the terminal that started it."""
    run.refuse_if_running(f"run '{run.run_id}'", hint="attach to it, or stop it first")
    return run.spawn(mode, run.root, *extra, host=os.uname().nodename)


def resume_run(run: RunDir) -> subprocess.Popen:
    """Restart a stopped or failed run's worker from its newest complete checkpoint."""
    run.refuse_if_running(f"run '{run.run_id}'", hint="attach to it instead")
    if run.effective_status() == "completed":
        raise RunError(f"run '{run.run_id}' already completed", where=str(run.root),
                       hint="start a new run to train further")
    if not checkpoint_dirs(run.checkpoints):
        raise RunError(f"run '{run.run_id}' has no checkpoint to resume from", where=str(run.checkpoints),
                       hint=f"start it again with: tunedeck train {run.config_path}")
    return start_worker(run, "train", extra=["--resume"])


def delete_run(run: RunDir) -> None:
    """Remove a run folder; refuses a run whose worker is still alive."""
    run.refuse_if_running(f"run '{run.run_id}'", hint="stop it first")
    shutil.rmtree(run.root)
