"""The device an estimate is for: a known GPU by name, a given memory size, this machine's GPU, or its CPU."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

GIB = 1 << 30


@dataclass(frozen=True)
class Device:
    """One accelerator (or the host, kind 'cpu') and the memory a run may use on it."""

    name: str
    memory: int  # bytes
    kind: str = "cuda"  # cuda | rocm | cpu
    bf16: bool = True  # fast bf16 hardware: decides what precision 'auto' becomes
    fused_attention: bool = True  # SDPA has a flash / memory-efficient kernel here (not on gfx906 / gfx908)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gpu(name: str, gib: float, kind: str = "cuda", bf16: bool = True, fused: bool = True) -> Device:
    return Device(name, int(gib * GIB), kind, bf16, fused)


# Total memory as torch.cuda.get_device_properties reports it (a little under the marketing size).
KNOWN_GPUS: dict[str, Device] = {
    "mi50": _gpu("AMD Instinct MI50 32GB", 31.98, "rocm", bf16=False, fused=False),
    "mi100": _gpu("AMD Instinct MI100", 31.98, "rocm", bf16=False, fused=False),
    "mi210": _gpu("AMD Instinct MI210", 63.98, "rocm"),
    "mi250x": _gpu("AMD Instinct MI250X (one GCD)", 63.98, "rocm"),
    "mi300x": _gpu("AMD Instinct MI300X", 191.5, "rocm"),
    "h100": _gpu("NVIDIA H100 80GB", 79.1),
    "h200": _gpu("NVIDIA H200", 139.8),
    "a100": _gpu("NVIDIA A100 80GB", 79.2),
    "a100-40": _gpu("NVIDIA A100 40GB", 39.4),
    "l40s": _gpu("NVIDIA L40S", 44.4),
    "rtx4090": _gpu("NVIDIA GeForce RTX 4090", 23.6),
    "rtx3090": _gpu("NVIDIA GeForce RTX 3090", 23.7),
    "a10": _gpu("NVIDIA A10", 22.1),
    "t4": _gpu("NVIDIA T4", 14.6, bf16=False),
    "v100": _gpu("NVIDIA V100 32GB", 31.7, bf16=False),
}


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", text.lower().replace("_", "-").replace(" ", ""))


def known_gpu(name: str) -> Device | None:
    """A GPU from the table by a short or marketing name: 'mi50', 'H100', 'NVIDIA A100 40GB', ..."""
    key = _key(name)
    if key in KNOWN_GPUS:
        return KNOWN_GPUS[key]
    if "40gb" in key and "a100" in key:
        return KNOWN_GPUS["a100-40"]
    for short in sorted(KNOWN_GPUS, key=len, reverse=True):
        if short.replace("-", "") in key.replace("-", ""):
            return KNOWN_GPUS[short]
    return None


def gpu_from_preset(preset: str | None) -> Device | None:
    """The GPU a preset is named for (mi50-2x -> MI50, h100 -> H100), if any."""
    if not preset:
        return None
    for part in re.split(r"[-_.]", preset.lower()):
        if part in KNOWN_GPUS:
            return KNOWN_GPUS[part]
    return None


def local_device() -> Device:
    """This machine's first GPU through NVML / ROCm SMI (no torch), else its CPU with the host RAM."""
    from tunedeck.core.hardware.monitor import host_memory, open_sources

    sources, _ = open_sources()
    try:
        for source in sources:
            readings = [g for g in source.read() if g.mem_total > 0]
            if readings:
                gpu = readings[0]
                kind = "cuda" if source.label == "nvidia-ml-py" else "rocm"
                table = known_gpu(gpu.name)
                return Device(gpu.name, gpu.mem_total, kind, table.bf16 if table else kind == "cuda",
                              table.fused_attention if table else True)
    finally:
        for source in sources:
            source.close()
    return Device("CPU (host RAM)", host_memory()[1], "cpu", False)


def choose_device(gpu: str | None = None, gpu_mem_gib: float | None = None, preset: str | None = None,
                  detect: bool = True) -> Device:
    """--gpu NAME, else --gpu-mem GiB, else the preset's GPU, else this machine's."""
    from tunedeck.core.errors import ConfigError

    if gpu:
        device = known_gpu(gpu)
        if device is None:
            raise ConfigError(f"unknown GPU '{gpu}'", where="--gpu",
                              hint=f"known: {', '.join(KNOWN_GPUS)}; or give its memory with --gpu-mem GIB")
        if gpu_mem_gib:
            device = Device(device.name, int(gpu_mem_gib * GIB), device.kind, device.bf16, device.fused_attention)
        return device
    if gpu_mem_gib:
        return Device(f"GPU with {gpu_mem_gib:g} GiB", int(gpu_mem_gib * GIB))
    device = gpu_from_preset(preset)
    if device is not None:
        return device
    return local_device() if detect else Device("CPU (host RAM)", 0, "cpu", False)
