"""DeepSpeed for multi-GPU ZeRO runs: installed or not, and the state of the ops ZeRO and offload need."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import shutil
import sys
from typing import Any

from tunedeck.core.doctor.check import Check

INSTALL = "pip install 'tunedeck[deepspeed]' (or pip install deepspeed) into the environment that has your torch"
KEY_OPS = {"cpu_adam": "distributed.offload_optimizer", "fused_adam": "DeepSpeed's fused Adam",
           "async_io": "NVMe offload"}


def deepspeed_version() -> str | None:
    if importlib.util.find_spec("deepspeed") is None:
        return None
    try:
        return importlib.metadata.version("deepspeed")
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def op_status() -> dict[str, str]:
    """Each key op -> 'installed' (prebuilt), 'jit' (compiles at first use) or 'unavailable'."""
    # DeepSpeed logs to stdout from import on (its logger keeps the stream it saw): keep it off the JSON report.
    with contextlib.redirect_stdout(sys.stderr):
        from deepspeed.git_version_info import installed_ops
        from deepspeed.ops.op_builder.all_ops import ALL_OPS

    ninja = shutil.which("ninja") is not None or importlib.util.find_spec("ninja") is not None
    states = {}
    for name in KEY_OPS:
        builder = ALL_OPS.get(name)
        if installed_ops.get(name):
            states[name] = "installed"
        elif builder is not None and builder.is_compatible(verbose=False) and ninja:
            states[name] = "jit"
        else:
            states[name] = "unavailable"
    return states


def check_deepspeed(hardware: dict[str, Any]) -> list[Check]:
    gpus = len(hardware.get("gpus") or [])
    version = deepspeed_version()
    if version is None:
        status = "warn" if gpus > 1 else "info"
        need = (f"needed for distributed.deepspeed_stage 2/3 on these {gpus} GPUs" if gpus > 1 else
                "only needed for multi-GPU ZeRO runs (distributed.deepspeed_stage 2/3)")
        return [Check("DeepSpeed", status, f"not installed: {need}", fix=INSTALL, group="deepspeed")]
    try:
        ops = op_status()
    except Exception as exc:  # noqa: BLE001 - a broken install is a finding
        return [Check("DeepSpeed", "fail", f"deepspeed {version} is installed but does not load: "
                      f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}",
                      fix="reinstall it against this torch: pip install --force-reinstall --no-deps deepspeed",
                      group="deepspeed")]
    checks = [Check("DeepSpeed", "ok", f"deepspeed {version}", group="deepspeed", data=ops)]
    for name, state in ops.items():
        if name == "async_io":
            continue
        status = "ok" if state != "unavailable" else "warn"
        detail = {"installed": "prebuilt", "jit": "compiles on first use (needs the toolkit: nvcc or hipcc)",
                  "unavailable": "cannot be built here"}[state]
        fix = None if status == "ok" else (
            f"{KEY_OPS[name]} will not work: pip install ninja and the CUDA/ROCm compiler, or rebuild with "
            f"DS_BUILD_{name.upper()}=1 pip install deepspeed")
        checks.append(Check(f"DeepSpeed op {name}", status, f"{name}: {detail}", fix=fix, group="deepspeed"))
    return checks
