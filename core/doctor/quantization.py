"""Whether bitsandbytes can run here, i.e. whether QLoRA (model.quantization 4bit / 8bit) is possible."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from tunedeck.core.doctor.check import Check

NO_QLORA = "keep model.quantization: none (LoRA on the full-precision base)"


def bitsandbytes_version() -> str | None:
    try:
        return importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        return None


def quantize_roundtrip(device: str) -> str | None:
    """None when a real 4-bit quantize / dequantize works on the device, else why it does not."""
    try:
        import bitsandbytes.functional as bnbf
        import torch

        weights = torch.randn(64, 64, device=device, dtype=torch.float16)
        packed, state = bnbf.quantize_4bit(weights, quant_type="nf4")
        restored = bnbf.dequantize_4bit(packed, state)
        error = (restored.float() - weights.float()).abs().mean().item()
        return None if error < 0.2 else f"4-bit round trip is wrong (mean error {error:.3f})"
    except Exception as exc:  # noqa: BLE001 - missing kernels fail in many ways
        return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def check_bitsandbytes(hardware: dict[str, Any], device: str) -> list[Check]:
    archs = sorted({g["arch"] for g in hardware.get("gpus") or []})
    version = bitsandbytes_version()
    if device == "cpu":
        detail = "QLoRA needs a GPU" + (f" (bitsandbytes {version} installed)" if version else
                                         "; bitsandbytes not installed")
        return [Check("bitsandbytes (QLoRA)", "info", detail, fix=NO_QLORA, group="quantization")]
    if version is None:
        fix = ("pip install bitsandbytes" if hardware.get("accelerator") == "cuda" else
               "bitsandbytes has no gfx906 kernels; " + NO_QLORA if "gfx906" in archs else
               "pip install bitsandbytes (its ROCm wheels cover MI200/MI300 and RDNA3), or " + NO_QLORA)
        return [Check("bitsandbytes (QLoRA)", "warn", "bitsandbytes not installed: model.quantization 4bit/8bit "
                      "will not load", fix=fix, group="quantization")]
    problem = quantize_roundtrip(device)
    if problem is None:
        return [Check("bitsandbytes (QLoRA)", "ok", f"bitsandbytes {version}: 4-bit quantization runs on {device}",
                      group="quantization")]
    return [Check("bitsandbytes (QLoRA)", "fail", f"bitsandbytes {version} cannot run on {', '.join(archs)}: "
                  f"{problem}", fix=NO_QLORA + (" (no gfx906 kernels exist)" if "gfx906" in archs else
                                                "; or reinstall bitsandbytes for this GPU"), group="quantization")]
