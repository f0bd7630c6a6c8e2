"""The torch build: CPU, CUDA or ROCm, and whether it carries kernels for each GPU's architecture."""

from __future__ import annotations

import re
from typing import Any

from tunedeck.core.doctor.check import Check
from tunedeck.core.doctor.gpus import driver_versions, rocm_release

LAST_ROCM_FOR_GFX906 = (6, 3)  # later ROCm releases ship no gfx906 BLAS kernels


def torch_info() -> dict[str, Any]:
    import torch

    cuda = getattr(torch.version, "cuda", None)
    hip = getattr(torch.version, "hip", None)
    build = f"ROCm/HIP {hip}" if hip else f"CUDA {cuda}" if cuda else "CPU-only build"
    try:
        arch_list = list(torch.cuda.get_arch_list()) if (cuda or hip) else []
    except Exception:  # noqa: BLE001 - a build without a runtime answers with an error
        arch_list = []
    return {"version": torch.__version__, "build": build, "cuda": cuda, "hip": hip, "arch_list": arch_list}


def _sm(arch: str) -> int:
    digits = re.sub(r"\D", "", arch)
    return int(digits) if digits else 0


def has_kernels(arch: str, arch_list: list[str]) -> tuple[bool, str]:
    """Whether a build's arch list runs a device arch: natively, or (CUDA) by JIT from an older PTX."""
    base = arch.split(":")[0]
    if base in arch_list:
        return True, f"native kernels for {base}"
    if base.startswith("sm_"):
        ptx = [a for a in arch_list if a.startswith("compute_") and _sm(a) <= _sm(base)]
        if ptx:
            return True, f"no native {base} kernels; PTX {max(ptx, key=_sm)} is compiled at first use (slow start)"
    return False, f"{base} is not in the build's arch list ({', '.join(arch_list) or 'empty'})"


def check_torch_build(hardware: dict[str, Any], info: dict[str, Any]) -> list[Check]:
    checks = [Check("torch build", "info", f"torch {info['version']}, {info['build']}", group="torch",
                    data=info)]
    archs = sorted({g["arch"] for g in hardware.get("gpus") or []})
    for arch in archs:
        ok, detail = has_kernels(arch, info["arch_list"])
        fix = None if ok else (
            f"install a torch build whose arch list includes {arch} (check with "
            f"python -c 'import torch; print(torch.cuda.get_arch_list())'), or build torch from source with "
            + (f"PYTORCH_ROCM_ARCH={arch}" if arch.startswith("gfx") else f"TORCH_CUDA_ARCH_LIST={_sm(arch) / 10:.1f}"))
        checks.append(Check(f"kernels for {arch}", "ok" if ok else "fail", detail, fix=fix, group="torch"))
    if "gfx906" in archs:
        release = rocm_release(driver_versions(), info)
        if release and release > LAST_ROCM_FOR_GFX906:
            checks.append(Check(
                "ROCm for gfx906", "warn", f"ROCm {release[0]}.{release[1]} ships no gfx906 BLAS kernels "
                f"(6.3 is the last release with them)", group="torch",
                fix="use ROCm 6.3 with torch from https://download.pytorch.org/whl/rocm6.3"))
    return checks
