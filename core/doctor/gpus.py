"""GPU inventory: what torch sees (name, architecture, memory) and what the drivers report (versions)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tunedeck.core.doctor.check import Check, gib

ROCM_INFO = Path("/opt/rocm/.info/version")
AMDGPU_VERSION = Path("/sys/module/amdgpu/version")
TORCH_ROCM_FIX = ("install torch built for ROCm, e.g. pip install torch --index-url "
                  "https://download.pytorch.org/whl/rocm6.3 (match your ROCm release)")
TORCH_CUDA_FIX = ("install torch built for CUDA, e.g. pip install torch --index-url "
                  "https://download.pytorch.org/whl/cu128 (match your driver's CUDA version)")


def driver_versions() -> dict[str, str]:
    """Driver and runtime versions this machine reports, whichever are present."""
    versions: dict[str, str] = {}
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            raw = pynvml.nvmlSystemGetDriverVersion()
            versions["nvidia_driver"] = raw.decode() if isinstance(raw, bytes) else str(raw)
            cuda = int(pynvml.nvmlSystemGetCudaDriverVersion())
            versions["cuda_driver"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVIDIA driver is the common case
        pass
    for key, path in (("rocm", ROCM_INFO), ("amdgpu_driver", AMDGPU_VERSION)):
        try:
            versions[key] = path.read_text(encoding="ascii").strip()
        except OSError:
            pass
    return versions


def smi_gpus() -> tuple[list[dict[str, Any]], list[str]]:
    """GPUs the management libraries see, independent of torch (a CPU-only torch still finds them here)."""
    from tunedeck.core.hardware.monitor import open_sources

    sources, reasons = open_sources()
    found = []
    for source in sources:
        try:
            for reading in source.read():
                found.append({"index": reading.index, "name": reading.name, "memory": reading.mem_total,
                              "used": reading.mem_used, "source": source.label})
        except Exception as exc:  # noqa: BLE001
            reasons.append(f"{source.label}: {exc}")
        finally:
            source.close()
    return found, reasons


def vendor_of(hardware: dict[str, Any]) -> str:
    return {"cuda": "NVIDIA", "rocm": "AMD"}.get(hardware.get("accelerator", ""), "")


def runtime_label(hardware: dict[str, Any], torch_info: dict[str, Any], versions: dict[str, str]) -> str:
    """'CUDA 12.8 (driver 570.86)' or 'ROCm 6.3.4 (HIP 6.3)': what the GPU stack is."""
    if hardware.get("accelerator") == "cuda":
        driver = versions.get("nvidia_driver")
        return f"CUDA {torch_info.get('cuda') or '?'}" + (f", driver {driver}" if driver else "")
    if hardware.get("accelerator") == "rocm":
        rocm = versions.get("rocm")
        return f"ROCm {rocm or '?'} (torch built for HIP {torch_info.get('hip') or '?'})"
    return ""


def check_gpus(hardware: dict[str, Any], torch_info: dict[str, Any]) -> list[Check]:
    """One check per GPU torch can use; a failing one when the drivers see GPUs that torch cannot."""
    versions = driver_versions()
    gpus = hardware.get("gpus") or []
    if gpus:
        runtime = runtime_label(hardware, torch_info, versions)
        return [Check(f"GPU {gpu['index']}", "ok",
                      f"{vendor_of(hardware)} {gpu['name']} · {gpu['arch']} · {gib(gpu['memory'])} · {runtime}",
                      group="gpus", data={**gpu, "vendor": vendor_of(hardware), **versions})
                for gpu in gpus]
    seen, reasons = smi_gpus()
    if seen:
        names = ", ".join(sorted({g["name"] for g in seen}))
        amd = any(g["source"] != "nvidia-ml-py" for g in seen)
        return [Check("GPUs", "fail", f"the driver sees {len(seen)} GPU(s) ({names}) but torch "
                      f"{torch_info.get('version')} cannot use them ({torch_info.get('build')})",
                      fix=TORCH_ROCM_FIX if amd else TORCH_CUDA_FIX, group="gpus",
                      data={"seen_by_driver": seen, **versions})]
    return [Check("GPUs", "info", "no GPU: training runs on the CPU", group="gpus",
                  data={"why": reasons, **versions})]


def rocm_release(versions: dict[str, str], torch_info: dict[str, Any]) -> tuple[int, int] | None:
    """The ROCm major.minor in use: the installed one, else the one torch was built with."""
    for text in (versions.get("rocm"), torch_info.get("hip")):
        match = re.match(r"(\d+)\.(\d+)", text or "")
        if match:
            return int(match.group(1)), int(match.group(2))
    return None
