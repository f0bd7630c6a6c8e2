"""How fast fp32, fp16 and bf16 really are here (a short matmul benchmark), the precision that follows, its cache."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from tunedeck.core.doctor.check import Check

DTYPES = ("fp32", "fp16", "bf16")
SIZE = {"cpu": 512, "gpu": 4096}
BUDGET_S = {"cpu": 0.25, "gpu": 0.2}  # per dtype, after one warm-up product
HALF_OVER_FP32 = 1.2  # a half precision must beat fp32 by this much to be worth its range / accuracy cost
BF16_VS_FP16 = 0.8  # bf16 is preferred (no loss scaling, fp32's range) while it reaches this share of fp16
CPU_BF16_STEP_NOTE = ("bf16 LoRA training steps on CPUs measured ~15x slower than fp32 (135M model: 40-60 s vs "
                      "3 s per step), whatever the bf16 matmul figure")
CACHE_VERSION = 1


def benchmark(device: str = "cpu", size: int | None = None, budget_s: float | None = None) -> dict[str, Any]:
    """GFLOPS of an n x n matmul per dtype on one device ('cpu' or 'cuda:0'); None where a dtype fails."""
    import torch

    kind = "cpu" if device == "cpu" else "gpu"
    n = size or SIZE[kind]
    budget = budget_s if budget_s is not None else BUDGET_S[kind]
    sync = torch.cuda.synchronize if kind == "gpu" else (lambda: None)
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    gflops: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for name in DTYPES:
        try:
            a = torch.randn(n, n, device=device, dtype=dtypes[name])
            b = torch.randn(n, n, device=device, dtype=dtypes[name])
            a @ b  # warm-up: library handles, kernel selection
            sync()
            reps, started = 0, time.perf_counter()
            while True:
                a @ b
                reps += 1
                if reps % 4 == 0 or kind == "cpu":
                    sync()
                    elapsed = time.perf_counter() - started
                    if elapsed >= budget and reps >= 2:
                        break
            gflops[name] = round(2 * n**3 * reps / elapsed / 1e9, 1)
        except Exception as exc:  # noqa: BLE001 - an unsupported dtype is a finding, not a crash
            gflops[name] = None
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return {"device": device, "size": n, "gflops": gflops, "errors": errors}


def recommend_precision(gflops: dict[str, float | None], accelerator: str) -> tuple[str, str]:
    """The training precision the measured figures call for, with the reason in words."""
    fp32 = gflops.get("fp32") or 0.0
    fp16 = gflops.get("fp16") or 0.0
    bf16 = gflops.get("bf16") or 0.0
    if accelerator == "cpu":
        return "fp32", CPU_BF16_STEP_NOTE
    if bf16 >= HALF_OVER_FP32 * fp32 and bf16 >= BF16_VS_FP16 * fp16:
        return "bf16", f"bf16 runs at {_ratio(bf16, fp16)} of fp16's speed and {_ratio(bf16, fp32, 'x')} fp32's"
    if fp16 >= HALF_OVER_FP32 * fp32:
        return "fp16", (f"bf16 is emulated or slow here ({bf16:g} vs fp16 {fp16:g} GFLOPS): fp16 is "
                        f"{_ratio(fp16, bf16, 'x')} faster")
    return "fp32", f"no half precision beats fp32 here (fp32 {fp32:g}, fp16 {fp16:g}, bf16 {bf16:g} GFLOPS)"


def _ratio(a: float, b: float, unit: str = "%") -> str:
    if not b:
        return "n/a"
    return f"{a / b:.1f}x" if unit == "x" else f"{100 * a / b:.0f}%"


def check_matmul(measured: dict[str, Any], hardware: dict[str, Any], bf16_claimed: bool | None) -> list[Check]:
    g = measured["gflops"]
    figures = ", ".join(f"{k} {v:g}" if v is not None else f"{k} failed" for k, v in g.items())
    where = "CPU" if measured["device"] == "cpu" else f"GPU {measured['device']}"
    checks = [Check("matmul speed", "info", f"{figures} GFLOPS ({where}, {measured['size']}x{measured['size']})",
                    group="precision", data=measured)]
    precision, reason = recommend_precision(g, hardware.get("accelerator", "cpu"))
    fp16, bf16 = g.get("fp16") or 0.0, g.get("bf16") or 0.0
    if hardware.get("accelerator") != "cpu" and fp16 and bf16 < 0.5 * fp16:
        claim = " although torch.cuda.is_bf16_supported() says True" if bf16_claimed else ""
        checks.append(Check("bf16 speed", "warn", f"bf16 is emulated here: {bf16:g} GFLOPS vs fp16 {fp16:g}{claim}",
                            fix="set train.precision: auto (picks fp16 here) or fp16 explicitly", group="precision"))
    checks.append(Check("precision", "ok", f"recommended {precision}: {reason}", group="precision",
                        data={"recommended": precision}))
    return checks


# -- the per-machine cache that train.precision 'auto' reads --------------------------------------------------


def machine_key(hardware: dict[str, Any]) -> str:
    gpus = ",".join(f"{g['name']}/{g['arch']}" for g in hardware.get("gpus") or [])
    return f"{hardware.get('host')}|{hardware.get('accelerator')}|{hardware.get('torch')}|{gpus}"


def _cache_path():
    from tunedeck.core.models.loading import cache_dir

    return cache_dir() / "precision.json"


def read_cached(hardware: dict[str, Any]) -> dict[str, Any] | None:
    try:
        entries = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    entry = entries.get(machine_key(hardware)) if isinstance(entries, dict) else None
    return entry if isinstance(entry, dict) and entry.get("version") == CACHE_VERSION else None


def store(hardware: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """Record a measurement and its recommendation for this machine; returns the entry."""
    from tunedeck.core.atomic import write_atomic

    precision, reason = recommend_precision(measured["gflops"], hardware.get("accelerator", "cpu"))
    entry = {"version": CACHE_VERSION, "precision": precision, "reason": reason, "measured_at": time.time(),
             **measured}
    path = _cache_path()
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        entries = entries if isinstance(entries, dict) else {}
    except (OSError, json.JSONDecodeError):
        entries = {}
    entries[machine_key(hardware)] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(entries, indent=2) + "\n")
    except OSError:
        pass  # a read-only cache only costs a new measurement next time
    return entry


def device_of(hardware: dict[str, Any]) -> str:
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    gpus = hardware.get("gpus") or []
    return f"cuda:{local if local < len(gpus) else 0}" if gpus else "cpu"


def measured_precision(hardware: dict[str, Any]) -> dict[str, Any]:
    """This machine's cached measurement, or a fresh one (a few seconds) stored for next time."""
    return read_cached(hardware) or store(hardware, benchmark(device_of(hardware)))
