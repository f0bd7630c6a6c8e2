"""Reading a file a user names: regular files only, at most a size cap, every refusal naming the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tunedeck.core.errors import TunedeckError

CONFIG_LIMIT = 4 << 20  # configs, presets, dataset_info.json, a model's config.json: far below this


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_regular(path: Path, error: type[TunedeckError], *, limit: int | None = None,
                 missing: str = "file not found", hint: str | None = None) -> bytes:
    """The bytes of a regular file; `error` naming it for a missing file, a folder, device, FIFO or socket (which
    would never end or block forever), or a file larger than `limit` bytes."""
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(missing, where=str(path), hint=hint) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", where=str(path), hint=hint) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"is {_kind(info.st_mode)}, not a file", where=str(path), hint=hint)
        if limit is not None and info.st_size > limit:
            raise error(f"is {info.st_size >> 20} MiB; more than the {limit >> 20} MiB a file like this can be",
                        where=str(path), hint=hint)
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(-1 if limit is None else limit + 1)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", where=str(path), hint=hint) from None
    finally:
        os.close(fd)
    if limit is not None and len(data) > limit:
        raise error(f"grew past {limit >> 20} MiB while being read", where=str(path), hint=hint)
    return data
