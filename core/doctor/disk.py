"""Free disk in the runs root against what a run of this model needs: checkpoints, merged copy, GGUF files."""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.doctor.check import Check, gib

ADAPTER_SHARE_PER_RANK = 0.00036  # all-linear adapter params per unit of r as a share of the base (7B models)
ADAM_COPIES = 3  # adapter weights + two Adam moments, fp32, in every checkpoint
SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


@dataclass(frozen=True)
class ModelSize:
    params: int
    adapter_params: int
    source: str  # how the count was obtained


def _local_config_dir(name_or_path: str) -> Path | None:
    from tunedeck.core.models.loading import BUILTIN_MODELS, cache_dir

    if name_or_path.startswith("builtin:"):
        model = BUILTIN_MODELS.get(name_or_path.removeprefix("builtin:"))
        folder = cache_dir() / "models" / f"{model.name}-v{model.version}" if model else None
        return folder if folder and (folder / "config.json").is_file() else None
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # noqa: BLE001 - not a valid repo id
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def _is_adapted(name: str, shape: list[int]) -> bool:
    """A 2-D weight that 'all-linear' LoRA adapts: not embeddings, not the output head."""
    skip = ("embed", "lm_head", "wte", "wpe", "token_embd", "output.weight")
    return len(shape) == 2 and name.endswith("weight") and not any(s in name for s in skip)


def count_safetensors(folder: Path, r: int) -> tuple[int, int] | None:
    """Parameter and all-linear adapter counts from the safetensors headers (no weights are read)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    params = adapter = 0
    for file in files:
        with open(file, "rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            shape = meta["shape"]
            params += math.prod(shape)
            adapter += r * sum(shape) if _is_adapted(name, shape) else 0
    return params, adapter


def model_size(config: Config) -> ModelSize | None:
    """The base model's size: from its local safetensors headers, else from a '7B' / '135M' in its name."""
    name, r = config.model.name_or_path, config.lora.r
    folder = _local_config_dir(name)
    counted = count_safetensors(folder, r) if folder is not None else None
    if counted:
        return ModelSize(*counted, "counted from its safetensors")
    match = SIZE_IN_NAME.search(name.rsplit("/", 1)[-1])
    if match:
        params = int(float(match.group(1)) * (1e9 if match.group(2).lower() == "b" else 1e6))
        return ModelSize(params, int(params * r * ADAPTER_SHARE_PER_RANK), f"read from its name ({match.group(0)}); "
                         "the model is not in the local cache")
    return None


def _bits(quant: str) -> float:
    from tunedeck.core.export.quant_types import QUANT_TYPES

    match = re.match(r"([\d.]+) bits", QUANT_TYPES.get(quant, (0, "16 bits"))[1])
    return float(match.group(1)) if match else 16.0


def space_needed(size: ModelSize, config: Config) -> dict[str, int]:
    """Bytes each output of a full run (train, merge, GGUF, quantize) takes, by name."""
    checkpoints = config.train.save_total_limit or 5
    need = {
        "checkpoints": checkpoints * size.adapter_params * 4 * ADAM_COPIES,
        "adapter": size.adapter_params * 4,
        "merged fp16": size.params * 2,
        "GGUF f16": size.params * 2,
    }
    for quant in config.export.quantizations:
        need[f"GGUF {quant}"] = int(size.params * _bits(quant) / 8)
    return need


def free_space(runs_root: Path) -> tuple[Path, int]:
    """Free bytes on the file system the runs root is (or will be) on."""
    probe = runs_root.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe, shutil.disk_usage(probe).free


def check_disk(runs_root: Path, config: Config) -> list[Check]:
    where, free = free_space(runs_root)
    size = model_size(config)
    if size is None:
        return [Check("disk", "info", f"{gib(free)} free at {where}; size of {config.model.name_or_path} unknown, "
                      "so the space a run needs is not estimated", group="disk", data={"free": free})]
    return [assess_disk(free, where, size, config)]


def assess_disk(free: int, where: Path, size: ModelSize, config: Config) -> Check:
    """ok, warn (less than 1.5x the need free) or fail (less than the need free), with the fix."""
    need = space_needed(size, config)
    total = int(sum(need.values()) * 1.1)
    parts = ", ".join(f"{k} {gib(v)}" for k, v in need.items())
    data: dict[str, Any] = {"free": free, "need": total, "parts": need, "params": size.params,
                            "model_size_source": size.source}
    detail = (f"{gib(free)} free at {where}; a full run of {config.model.name_or_path} "
              f"({size.params / 1e9:.2f}B parameters, {size.source}) needs about {gib(total)}: {parts}")
    fewer = "fewer checkpoints (train.save_total_limit) and quant types (export.quantizations) need less"
    if free < total:
        return Check("disk", "fail", detail, group="disk", data=data,
                     fix=f"free at least {gib(total - free)} more, or use --runs-dir on a bigger disk; {fewer}")
    if free < 1.5 * total:
        return Check("disk", "warn", detail + " (less than 1.5x to spare)", group="disk", data=data,
                     fix=f"a second run or export will not fit: use --runs-dir on a bigger disk; {fewer}")
    return Check("disk", "ok", detail, group="disk", data=data)
