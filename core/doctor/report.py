"""The doctor's run: every check group in turn, a recommended precision, as JSON or as text."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.doctor.check import Check, failed_check

REPORT_VERSION = 1
MARKS = {"ok": " ok ", "warn": "WARN", "fail": "FAIL", "info": "info"}


@dataclass
class DoctorReport:
    hardware: dict[str, Any]
    torch: dict[str, Any]
    matmul: dict[str, Any]
    recommended_precision: str
    precision_reason: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def worst(self) -> str:
        for status in ("fail", "warn"):
            if any(c.status == status for c in self.checks):
                return status
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION, "host": self.hardware.get("host"),
            "accelerator": self.hardware.get("accelerator"), "gpus": self.hardware.get("gpus", []),
            "torch": self.torch, "matmul": self.matmul, "recommended_precision": self.recommended_precision,
            "precision_reason": self.precision_reason, "status": self.worst,
            "checks": [c.to_dict() for c in self.checks], "seconds": round(self.seconds, 2),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_text(self) -> str:
        lines = [f"tunedeck doctor: {self.hardware.get('host')} ({self.hardware.get('accelerator')}), "
                 f"{self.seconds:.1f} s"]
        group = None
        for check in self.checks:
            if check.group != group:
                group = check.group
                lines.append(f"\n{group}")
            lines.append(f"  [{MARKS[check.status]}] {check.name}: {check.detail}")
            if check.fix and check.status in ("warn", "fail"):
                lines.append(f"         fix: {check.fix}")
        lines.append(f"\nprecision: auto -> {self.recommended_precision} ({self.precision_reason})")
        return "\n".join(lines)


def _guarded(name: str, group: str, run: Callable[[], list[Check]]) -> list[Check]:
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        return [failed_check(name, group, exc)]


def run_doctor(runs_root: Path, config: Config | None = None) -> DoctorReport:
    """Inspect this machine for training `config` (default: the built-in defaults) into `runs_root`."""
    from tunedeck.core.doctor import deepspeed_ops, disk, gpus, kernels, matmul, quantization, torch_build
    from tunedeck.core.hardware.detect import detect_hardware

    started = time.perf_counter()
    config = config or Config()
    hardware = detect_hardware()
    info = torch_build.torch_info()
    device = matmul.device_of(hardware)
    checks = _guarded("GPUs", "gpus", lambda: gpus.check_gpus(hardware, info))
    checks += _guarded("torch build", "torch", lambda: torch_build.check_torch_build(hardware, info))
    measured = matmul.benchmark(device)
    entry = matmul.store(hardware, measured)  # train.precision 'auto' reads it from now on
    checks += _guarded("matmul", "precision", lambda: matmul.check_matmul(measured, hardware, _bf16_claim(device)))
    checks += _guarded("attention", "kernels", lambda: kernels.check_kernels(hardware, device))
    checks += _guarded("bitsandbytes", "quantization", lambda: quantization.check_bitsandbytes(hardware, device))
    checks += _guarded("DeepSpeed", "deepspeed", lambda: deepspeed_ops.check_deepspeed(hardware))
    checks += _guarded("disk", "disk", lambda: disk.check_disk(runs_root, config))
    return DoctorReport(hardware, info, measured, entry["precision"], entry["reason"], checks,
                        time.perf_counter() - started)


def _bf16_claim(device: str) -> bool | None:
    if device == "cpu":
        return None
    import torch

    return bool(torch.cuda.is_bf16_supported())
