"""What this machine has (CPU, RAM, GPUs) and the compute precision that suits it."""

from __future__ import annotations

import os
import platform
from typing import Any

from tunedeck.core.errors import ConfigError

# ROCm architectures with bf16 matrix hardware; older ones (gfx906 MI50, gfx908 MI100) emulate it.
ROCM_BF16_ARCHS = ("gfx90a", "gfx94", "gfx95", "gfx11", "gfx12")


def detect_hardware() -> dict[str, Any]:
    """A JSON-ready description of the machine, as the worker sees it (imports torch)."""
    import psutil
    import torch

    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count() or 1,
        "ram_total": psutil.virtual_memory().total,
        "torch": torch.__version__,
        "accelerator": "cpu",
        "gpus": [],
    }
    if torch.cuda.is_available():
        info["accelerator"] = "rocm" if getattr(torch.version, "hip", None) else "cuda"
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            arch = getattr(props, "gcnArchName", "") or f"sm_{props.major}{props.minor}"
            info["gpus"].append(
                {"index": index, "name": props.name, "memory": props.total_memory, "arch": arch.split(":")[0]}
            )
    return info


def has_fast_bf16(hardware: dict[str, Any]) -> bool:
    accelerator = hardware.get("accelerator")
    gpus = hardware.get("gpus") or []
    if accelerator == "cuda":
        return all(_sm_version(g["arch"]) >= 80 for g in gpus) if gpus else False
    if accelerator == "rocm":
        return all(g["arch"].startswith(ROCM_BF16_ARCHS) for g in gpus) if gpus else False
    return False


def _sm_version(arch: str) -> int:
    digits = "".join(ch for ch in arch if ch.isdigit())
    return int(digits) if digits else 0


def auto_precision(hardware: dict[str, Any]) -> str:
    """What 'auto' means here: the doctor's measured answer for this machine (cached; measured once if absent)."""
    from tunedeck.core.doctor.matmul import measured_precision, recommend_precision

    if hardware.get("accelerator") == "cpu":
        return recommend_precision({}, "cpu")[0]
    try:
        return measured_precision(hardware)["precision"]
    except Exception:  # noqa: BLE001 - no measurement possible: fall back to what the architecture promises
        return "bf16" if has_fast_bf16(hardware) else "fp16"


def resolve_precision(requested: str, hardware: dict[str, Any]) -> str:
    """The concrete precision for a requested one; 'auto' picks what was measured fastest here."""
    on_cpu = hardware.get("accelerator") == "cpu"
    if requested == "auto":
        return auto_precision(hardware)
    if requested == "fp16" and on_cpu:
        raise ConfigError("train.precision fp16 needs a GPU", where="train.precision",
                          hint="use auto or fp32 on a CPU-only machine")
    return requested


def precision_warning(precision: str, hardware: dict[str, Any]) -> str | None:
    if precision == "bf16" and hardware.get("accelerator") == "cpu":
        return "bf16 on this CPU is emulated and about 15x slower than fp32; set train.precision to auto or fp32"
    if precision == "bf16" and hardware.get("gpus"):
        from tunedeck.core.doctor.matmul import read_cached

        measured = (read_cached(hardware) or {}).get("gflops") or {}
        fp16, bf16 = measured.get("fp16") or 0.0, measured.get("bf16") or 0.0
        if fp16 and bf16:
            if bf16 < 0.5 * fp16:
                return (f"bf16 is emulated on this GPU: {bf16:g} GFLOPS vs fp16 {fp16:g} (measured by tunedeck "
                        "doctor); set train.precision to auto or fp16")
            return None
    if precision == "bf16" and hardware.get("gpus") and not has_fast_bf16(hardware):
        archs = ", ".join(sorted({g["arch"] for g in hardware["gpus"]}))
        return f"bf16 has no hardware support on {archs}; fp16 is usually faster there (tunedeck doctor measures it)"
    return None
