"""Checkpoint integrity: a checkpoint counts only once its completion manifest is written and matches."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from tunedeck.core.atomic import write_atomic

MANIFEST = "tunedeck-complete.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(path: Path, step: int) -> None:
    """Record every file of a finished checkpoint with its size; written last, atomically."""
    files = {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    write_atomic(path / MANIFEST, json.dumps({"step": step, "files": files, "written_at": time.time()}, indent=1))


def check_complete(path: Path) -> str | None:
    """None for a complete checkpoint, else why it is not (no manifest, missing or truncated file)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "it was never finished (no completion manifest: the process stopped while writing it)"
    except (OSError, json.JSONDecodeError):
        return "its completion manifest is unreadable"
    for name, size in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} is {file.stat().st_size} bytes, expected {size}"
    if not manifest.get("files"):
        return "its completion manifest lists no files"
    return None


def checkpoint_dirs(root: Path) -> list[tuple[int, Path]]:
    """Checkpoint folders under root as (step, path), newest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT.match(p.name))]
    return sorted(found, reverse=True)


def newest_complete(root: Path, warn: Callable[[str], None] | None = None) -> tuple[int, Path] | None:
    """The newest complete checkpoint; newer broken ones are set aside (renamed) with a warning each."""
    for step, path in checkpoint_dirs(root):
        reason = check_complete(path)
        if reason is None:
            return step, path
        aside = path.with_name(f"incomplete-{path.name}-{int(time.time())}")
        path.rename(aside)
        if warn:
            warn(f"skipping {path.name}: {reason}; moved to {aside.name}")
    return None
