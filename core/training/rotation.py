"""Checkpoint rotation after the newest is complete, and pins that keep a checkpoint a reader is using."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tunedeck.core.errors import RunError
from tunedeck.core.training.checkpoints import check_complete, checkpoint_dirs

LOCK = ".rotation.lock"  # held while rotation chooses and removes, and while a reader pins
PINS = ".pins"  # one file per pin, `checkpoint-N.<pid>.<random>`, share-locked by its holder for its life
GOING = ".removing-"  # a rotated checkpoint is renamed to this prefix first, so it never looks half there


@contextmanager
def _rotation_lock(root: Path) -> Iterator[None]:
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def rotate(root: Path, keep: int | None, best: str | Path | None = None) -> list[str]:
    """Remove the oldest checkpoints until at most `keep` are left; the names removed.

    Called once the newest checkpoint is complete (its manifest written), so a newer checkpoint never costs an
    older one before it is itself complete. The newest, the best and every pinned checkpoint stay.
    """
    if not keep or not root.is_dir():
        return []
    removed = []
    with _rotation_lock(root):
        found = checkpoint_dirs(root)  # newest first
        protected = {found[0][1].name} if found else set()
        if best:
            protected.add(Path(best).name)
        left = len(found)
        for _, path in reversed(found):
            if left <= keep:
                break
            if path.name in protected or pinned(root, path.name):
                continue
            going = path.with_name(f"{GOING}{path.name}-{secrets.token_hex(4)}")
            os.replace(path, going)
            removed.append(path.name)
            left -= 1
    for leftover in root.glob(f"{GOING}*"):  # this rotation's, and any a crash left behind
        shutil.rmtree(leftover, ignore_errors=True)
    return removed


def pinned(root: Path, name: str) -> bool:
    """Whether a live process holds a pin on checkpoint `name`; stale pins (their holder died) are removed."""
    folder = root / PINS
    if not folder.is_dir():
        return False
    held = False
    for pin in folder.glob(f"{name}.*"):
        try:
            fd = os.open(pin, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        else:
            pin.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return held


@contextmanager
def pin_checkpoint(path: Path) -> Iterator[Path]:
    """Keep checkpoint `path` from rotation while the block runs (the kernel drops the pin if this process dies).

    RunError when it is gone (rotated away) or not complete: a reader never reads a checkpoint that is being
    written or removed.
    """
    root = path.parent
    with _rotation_lock(root):
        if not path.is_dir():
            raise RunError(f"{path.name} is gone (training rotated it away)", where=str(root),
                           hint="pick a newer checkpoint, best or last")
        reason = check_complete(path)  # no recovery here: training may be writing its manifest right now
        if reason:
            raise RunError(f"{path.name} is not complete: {reason}", where=str(root),
                           hint="wait until training has written it, or pick another checkpoint")
        (root / PINS).mkdir(exist_ok=True)
        pin = root / PINS / f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(pin, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        yield path
    finally:
        pin.unlink(missing_ok=True)
        os.close(fd)
