"""Checkpoint integrity: a checkpoint counts once its completion manifest is written, or once every file verifies."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from tunedeck.core.atomic import write_atomic

MANIFEST = "tunedeck-complete.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
NO_MANIFEST = "it was never finished (no completion manifest: the process stopped while writing it)"
TEST_PAUSE = "TUNEDECK_TEST_PAUSE"  # test hook, see hold_for_test
# What a resume reads, besides the adapter: the Trainer writes trainer_state.json last.
RESUME_FILES = ("trainer_state.json", "scheduler.pt")


def mark_complete(path: Path, step: int) -> None:
    """Record every file of a finished checkpoint with its size; written last, atomically, once the files are on
    disk (fsync), so not even a power loss leaves a manifest vouching for data that never reached the disk."""
    found = [p for p in sorted(path.rglob("*")) if p.is_file() and p.name != MANIFEST and not _is_temporary(p)]
    for file in found:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    files = {str(p.relative_to(path)): p.stat().st_size for p in found}
    write_atomic(path / MANIFEST, json.dumps({"step": step, "files": files, "written_at": time.time()}, indent=1))


def check_complete(path: Path) -> str | None:
    """None for a complete checkpoint, else why it is not (no manifest, missing or truncated file)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return NO_MANIFEST
    except (OSError, ValueError):
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


def verify_files(path: Path, step: int) -> str | None:
    """For a checkpoint without a manifest: None when everything a resume reads is there and whole, else why not.

    Whole means: trainer_state.json parses and says this step (the Trainer writes it last), every JSON file
    parses, every safetensors header parses and its tensors end exactly at the end of the file, and every
    torch file (optimizer, scheduler, RNG states) is a zip archive whose CRCs match.
    """
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "trainer_state.json is missing or unreadable"
    if not isinstance(state, dict) or state.get("global_step") != step:
        return f"trainer_state.json is not the state of step {step}"
    files = [p for p in sorted(path.rglob("*")) if p.is_file() and not _is_temporary(p)]
    names = {p.name for p in files}
    needed = [*RESUME_FILES, "adapter_config.json"]
    if not any(n.startswith("rng_state") for n in names):
        needed.append("rng_state.pth")
    if "optimizer.pt" not in names and not any(p.parent.name.startswith("global_step") for p in files):
        needed.append("optimizer.pt")  # DeepSpeed keeps its optimizer shards in global_stepN/ instead
    if not names & {"adapter_model.safetensors", "adapter_model.bin"}:
        needed.append("adapter_model.safetensors")
    missing = [n for n in needed if n not in names]
    if missing:
        return f"{missing[0]} is missing"
    for file in files:
        reason = _file_problem(file)
        if reason:
            return f"{file.relative_to(path)} {reason}"
    return None


def _file_problem(file: Path) -> str | None:
    """Why one checkpoint file is not whole, judged by its kind; None when it is (or its kind has no check)."""
    suffix = file.suffix
    try:
        if suffix == ".json":
            json.loads(file.read_text(encoding="utf-8"))
        elif suffix == ".safetensors":
            return _safetensors_problem(file)
        elif suffix in (".pt", ".pth", ".bin"):
            with zipfile.ZipFile(file) as archive:
                bad = archive.testzip()
            return f"is damaged ({bad} fails its CRC)" if bad else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        return f"is damaged ({type(exc).__name__})"
    return None


def _safetensors_problem(file: Path) -> str | None:
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return "is truncated (no header)"
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            return "is truncated (header longer than the file)"
        header = json.loads(handle.read(length))
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    if 8 + length + max(ends, default=0) != size:
        return f"is {size} bytes, its header describes {8 + length + max(ends, default=0)}"
    return None


def _is_temporary(path: Path) -> bool:
    """A file written under a temporary name that never got its final one (e.g. a half-written manifest)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def folder_size(path: Path) -> int:
    """Bytes in the files under a folder (0 when it is gone)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def checkpoint_dirs(root: Path) -> list[tuple[int, Path]]:
    """Checkpoint folders under root as (step, path), newest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT.match(p.name))]
    return sorted(found, reverse=True)


def recover(path: Path, step: int) -> str | None:
    """Give a checkpoint that lacks only its manifest one, when every file verifies; else why it cannot be used."""
    reason = verify_files(path, step)
    if reason is None:
        for leftover in path.glob(f".{MANIFEST}.*.tmp"):
            leftover.unlink(missing_ok=True)
        mark_complete(path, step)
    return reason


def newest_complete(root: Path, warn: Callable[[str], None] | None = None) -> tuple[int, Path] | None:
    """The newest complete checkpoint, recovering one that lacks only its manifest; newer broken ones are set
    aside (renamed) with a warning each."""
    for step, path in checkpoint_dirs(root):
        reason = check_complete(path)
        if reason == NO_MANIFEST:
            why = recover(path, step)
            if why is None:
                if warn:
                    warn(f"{path.name} has no completion manifest (the process stopped right after writing it), "
                         "but every file verifies: recovered")
                return step, path
            reason = f"{reason}; {why}"
        if reason is None:
            return step, path
        aside = path.with_name(f"incomplete-{path.name}-{int(time.time())}")
        path.rename(aside)
        if warn:
            warn(f"skipping {path.name}: {reason}; moved to {aside.name}")
    return None


def hold_for_test(point: str, step: int) -> None:
    """Test hook: with TUNEDECK_TEST_PAUSE=POINT:STEP the worker says so on stderr and stops itself (SIGSTOP), so a
    test can act at exactly that point, then SIGCONT or SIGKILL it. Unset (always, outside tests) it reads one
    environment variable."""
    if os.environ.get(TEST_PAUSE) != f"{point}:{step}":
        return
    print(f"test hook: paused at {point} (step {step})", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
