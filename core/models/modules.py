"""A model's module names from its weights map (safetensors headers, the index), read without loading a weight."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from tunedeck.core.errors import ConfigError, ModelError
from tunedeck.core.user_files import CONFIG_LIMIT, read_regular

HEADER_LIMIT = 100 << 20  # a safetensors header (names, shapes, offsets) is kilobytes to a few MiB


def weight_shapes(model_dir: Path) -> dict[str, list[int]] | None:
    """Every weight's name and shape from the folder's safetensors headers; None when it holds no safetensors."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        raw = read_regular(index, ModelError, limit=CONFIG_LIMIT)
        try:
            files = sorted(set(json.loads(raw)["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ModelError("unreadable safetensors index (no weight_map)", where=str(index)) from None
    else:
        files = [p.name for p in sorted(model_dir.glob("*.safetensors"))]
    if not files:
        return None
    shapes: dict[str, list[int]] = {}
    for name in files:
        shapes.update(_header_shapes(model_dir / name))
    return shapes


def _header_shapes(file: Path) -> dict[str, list[int]]:
    try:
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > HEADER_LIMIT:
                raise ValueError("header too long")
            header = json.loads(handle.read(length))
        return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError):
        raise ModelError("not a readable safetensors file", where=str(file),
                         hint="the download or conversion was cut short: fetch the model again") from None


def module_names(shapes: dict[str, list[int]]) -> set[str]:
    """Every module path the weights imply: 'model.layers.0.self_attn.q_proj' and each of its parents."""
    names = set()
    for key in shapes:
        parts = key.split(".")[:-1]  # drop 'weight' / 'bias'
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return names


def linear_names(shapes: dict[str, list[int]]) -> list[str]:
    """The short names of the layers LoRA usually targets (2-D weights, embeddings aside), in model order."""
    seen: dict[str, None] = {}
    for key, shape in shapes.items():
        parts = key.split(".")
        if parts[-1] == "weight" and len(shape) == 2 and len(parts) > 1 and "embed" not in parts[-2]:
            seen.setdefault(parts[-2], None)
    return list(seen)


def check_target_modules(model_dir: Path, targets: str | list[str]) -> None:
    """ConfigError when lora.target_modules names a module the model does not have (PEFT's matching: a list entry
    matches a module name or its last parts, a string is a regular expression matching a whole name)."""
    if targets == "all-linear":
        return
    if not targets:
        raise ConfigError("lora.target_modules names no module", where=str(model_dir),
                          hint="all-linear, or a list such as [q_proj, v_proj]")
    shapes = weight_shapes(model_dir)
    if shapes is None:
        return  # no safetensors to read names from (e.g. .bin weights): the worker's PEFT check stays
    names = module_names(shapes)
    if isinstance(targets, str):
        try:
            found = any(re.fullmatch(targets, n) for n in names)
        except re.error as exc:
            raise ConfigError(f"lora.target_modules: not a valid regular expression ({exc})",
                              where=str(model_dir)) from None
        missing = [] if found else [targets]
    else:
        missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing:
        raise ConfigError(f"lora.target_modules: this model has no module {missing[0]!r}", where=str(model_dir),
                          hint=f"its linear layers: {', '.join(linear_names(shapes))}, or all-linear")
