"""Where an export's files live under runs/<id>/export/, and which adapter a checkpoint choice means."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tunedeck.core.errors import RunError
from tunedeck.core.jobs.folder import JobFolder
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.training.rotation import pin_checkpoint

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class ExportLayout(JobFolder):  # root: runs/<id>/export
    name: str  # file stem for GGUFs and the Ollama model name

    @classmethod
    def for_run(cls, run: RunDir, name: str | None = None) -> ExportLayout:
        return cls(run.path / "export", safe_name(name or run.run_id))

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    def gguf(self, kind: str) -> Path:
        """kind: the converted type ('f16', 'bf16') or a quantization type ('Q4_K_M')."""
        return self.root / f"{self.name}-{kind}.gguf"

    def modelfile(self, quant: str) -> Path:
        return self.root / f"Modelfile.{quant}"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    def remove_leftovers(self) -> list[Path]:
        """Delete temporary files and folders a killed export left behind (their names start with '.')."""
        removed = []
        if not self.root.is_dir():
            return removed
        for path in self.root.iterdir():
            if path.name.startswith(".") and path.name.endswith((".tmp", ".old")):
                if path.is_dir():
                    import shutil

                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed


def safe_name(text: str) -> str:
    """A file and Ollama model name: lower-case letters, digits, '.', '_' and '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return name[:80] or "model"


def resolve_adapter(run: RunDir, choice: str) -> tuple[str, Path]:
    """The adapter folder a checkpoint choice names: ('best'|'last'|'checkpoint-N', path)."""
    if choice == "last":
        return "last", _require_adapter(run.adapter, run)
    if choice == "best":
        best = run.read_status().get("best_checkpoint")
        if best:
            # status.json holds the path the worker saw; the run folder may have moved since.
            path = run.checkpoints / Path(best).name
            if path.is_dir():
                return Path(best).name, _require_adapter(path, run)
        return "last", _require_adapter(run.adapter, run)
    if not choice.isdigit():
        raise RunError(f"unknown checkpoint '{choice}'", where=str(run.path), hint="use best, last or a step number")
    path = run.checkpoints / f"checkpoint-{int(choice)}"
    if not path.is_dir():
        steps = sorted(int(m.group(1)) for p in run.checkpoints.glob("checkpoint-*")
                       if (m := CHECKPOINT_DIR.match(p.name)))
        known = ", ".join(map(str, steps)) or "none"
        raise RunError(f"no checkpoint at step {choice}", where=str(run.checkpoints),
                       hint=f"saved checkpoints: {known}")
    return path.name, _require_adapter(path, run)


@contextmanager
def held_adapter(run: RunDir, choice: str) -> Iterator[tuple[str, Path]]:
    """resolve_adapter, with a checkpoint pinned until the block ends: a training still running never rotates away
    the checkpoint an export or evaluation reads, and a checkpoint still being written is refused."""
    name, path = resolve_adapter(run, choice)
    if path.parent != run.checkpoints:
        yield name, path
        return
    with pin_checkpoint(path):
        yield name, path


def _require_adapter(path: Path, run: RunDir) -> Path:
    if not (path / "adapter_config.json").is_file():
        raise RunError("no trained adapter here", where=str(path),
                       hint=f"train run {run.run_id} to completion first, or pick a saved checkpoint")
    return path
