"""Folders holding training data, conversations or runs: private to their owner (0700), tightened when wider."""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE = 0o700


def private_dir(path: Path) -> int | None:
    """Create `path` (and its parents) if needed and make it 0700; the mode it had when that was wider, else None."""
    path.mkdir(mode=PRIVATE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, mode & ~0o077 | PRIVATE)
        return mode
    return None
