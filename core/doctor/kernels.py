"""Attention kernels: which SDPA backends really run on this device, and whether flash-attention is installed."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from tunedeck.core.doctor.check import Check
from tunedeck.core.hardware.detect import ROCM_BF16_ARCHS

BY_LENGTH = "keep train.batching: by_length (padding_free needs flash-attention to stay fast)"


def sdpa_backends(device: str) -> dict[str, str]:
    """Each SDPA backend -> 'ok' or why it refused, from a tiny real attention call on the device."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention

    dtype = torch.float16 if device != "cpu" else torch.float32
    q = torch.randn(1, 2, 64, 64, device=device, dtype=dtype)
    results = {}
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("mem_efficient", SDPBackend.EFFICIENT_ATTENTION),
                          ("math", SDPBackend.MATH)):
        try:
            with sdpa_kernel([backend]):
                scaled_dot_product_attention(q, q, q, is_causal=True)
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - "no available kernel" is the answer we look for
            results[name] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return results


def flash_attn_version() -> str | None:
    try:
        return importlib.metadata.version("flash-attn")
    except importlib.metadata.PackageNotFoundError:
        return None


def flash_attn_fix(hardware: dict[str, Any]) -> tuple[str, str | None]:
    """(status, fix) for a missing flash-attn package on this hardware."""
    archs = [g["arch"] for g in hardware.get("gpus") or []]
    if hardware.get("accelerator") == "cuda" and archs and all(_sm(a) >= 80 for a in archs):
        return "warn", "pip install flash-attn --no-build-isolation, then set model.attn_implementation: " \
                       "flash_attention_2 (or " + BY_LENGTH + ")"
    if hardware.get("accelerator") == "rocm" and archs and all(a.startswith(ROCM_BF16_ARCHS[:2]) for a in archs):
        return "warn", "install ROCm flash-attention (github.com/ROCm/flash-attention) for MI200/MI300, or " + BY_LENGTH
    return "info", BY_LENGTH


def _sm(arch: str) -> int:
    digits = "".join(ch for ch in arch if ch.isdigit())
    return int(digits) if arch.startswith("sm_") and digits else 0


def check_kernels(hardware: dict[str, Any], device: str) -> list[Check]:
    backends = sdpa_backends(device)
    usable = [name for name, state in backends.items() if state == "ok"]
    fast = [name for name in usable if name != "math"]
    detail = f"SDPA on {device}: " + ", ".join(f"{k} {'yes' if v == 'ok' else 'no'}" for k, v in backends.items())
    checks = [Check("attention (SDPA)", "ok" if fast or device == "cpu" else "warn", detail, group="kernels",
                    fix=None if fast or device == "cpu" else "only the math kernel runs here: attention memory grows "
                    "with the square of the sequence; lower data.cutoff_len or keep gradient_checkpointing on",
                    data=backends)]
    version = flash_attn_version()
    if version:
        checks.append(Check("flash-attn", "ok", f"flash-attn {version} installed (model.attn_implementation: "
                            "flash_attention_2 uses it)", group="kernels"))
    else:
        status, fix = flash_attn_fix(hardware)
        archs = ", ".join(sorted({g["arch"] for g in hardware.get("gpus") or []}))
        why = {"cpu": "; it needs a GPU", "rocm": f"; ROCm flash-attention has no kernels for {archs}"}
        detail = "flash-attn not installed" + ("" if status == "warn" else why.get(hardware.get("accelerator"), ""))
        checks.append(Check("flash-attn", status, detail, fix=fix, group="kernels"))
    return checks
