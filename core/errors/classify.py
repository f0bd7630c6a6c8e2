"""What a failed job ran into, as an error event: out-of-memory, a full disk and NCCL/RCCL failures recognised."""

from __future__ import annotations

import errno
import logging
import resource
import shutil
from pathlib import Path
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.errors import TunedeckError
from tunedeck.core.stream.events import Error

log = logging.getLogger(__name__)

OOM_HINTS = [
    "lower train.batch_size (e.g. 4 -> 2) and raise gradient_accumulation_steps to keep the effective batch",
    "halve data.cutoff_len (e.g. 4096 -> 2048)",
    "turn on train.gradient_checkpointing",
    "with several GPUs, use distributed.deepspeed_stage 2 with offload_optimizer: true",
]
OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "hipErrorOutOfMemory")
COMM_MARKERS = ("nccl", "rccl", "collective operation timeout", "processgroupgloo", "distbackenderror")
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How the libraries that write checkpoints say it: torch's zip writer, Rust's io errors (safetensors, tokenizers).
DISK_FULL_MARKERS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122",
                     "pytorchstreamwriter failed writing file")
COMM_HINTS = [
    "a collective timed out or failed: often one rank died first; look for its own error earlier in worker.log",
    "run with NCCL_DEBUG=INFO to see which rank and link failed",
    "check that every GPU is visible and healthy (tunedeck doctor); on PCIe boxes try NCCL_P2P_DISABLE=1",
]


def classify(exc: BaseException, config: Config | None = None, step: int | None = None,
             longest: int | None = None) -> Error:
    """The error event for an exception: its kind, a readable message and what to try.

    Out-of-memory errors carry the step, the memory at the time and the estimator's ranked changes (given the
    run's config); NCCL/RCCL failures are crashes with what to check.
    """
    if isinstance(exc, TunedeckError):
        return Error(kind=exc.kind, message=exc.one_line(), hints=[exc.hint] if exc.hint else [], step=step)
    if is_disk_full(exc):
        filename = next((e.filename for e in _chain(exc) if isinstance(e, OSError) and e.filename), None)
        return disk_full_error(Path(filename).parent if filename else None, step=step)
    if is_out_of_memory(exc):
        return oom_error(exc, config, step, longest)
    if is_comm_failure(exc):
        return comm_error(exc, step)
    text = str(exc)
    first = text.splitlines()[0] if text else ""
    return Error(kind="crash", message=f"{type(exc).__name__}: {first}".rstrip(": "),
                 hints=["the full traceback is in worker.log"], step=step)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA / HIP out-of-memory errors, and the CPU allocator (or Python) failing to get memory."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return any(marker.lower() in text for marker in OOM_MARKERS)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception's chain, or a writer library saying so in its own words."""
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in DISK_FULL_ERRNOS:
            return True
        if any(marker in str(link).lower() for marker in DISK_FULL_MARKERS):
            return True
    return False


def disk_full_error(folder: Path | None, what: str = "", needs: int | None = None, step: int | None = None,
                    hints: list[str] = ()) -> Error:
    """The error event of a full disk: where, how much is free now, and what the write needed."""
    free = None
    for candidate in ([folder, *folder.parents] if folder else []):
        try:
            free = shutil.disk_usage(candidate).free
            break
        except OSError:
            continue
    parts = [f"the disk is full{f' while {what}' if what else ''}" + (f" in {folder}" if folder else "")]
    if free is not None:
        parts.append(f"{human_bytes(free)} free")
    if needs:
        parts.append(f"a checkpoint needs about {human_bytes(needs)}")
    return Error(kind="disk", message=": ".join(parts[:1]) + (f" ({', '.join(parts[1:])})" if parts[1:] else ""),
                 hints=[*hints, "free some space there, or move the runs root (--runs-dir) to a larger disk"],
                 step=step)


def human_bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def is_comm_failure(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(marker in text for marker in COMM_MARKERS)


def memory_now() -> dict[str, Any]:
    """Memory at the time of the failure: per GPU (allocated, reserved, peak, total) or the host process."""
    import psutil

    info: dict[str, Any] = {}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [{
                "index": i, "allocated": int(torch.cuda.memory_allocated(i)),
                "reserved": int(torch.cuda.memory_reserved(i)),
                "peak_allocated": int(torch.cuda.max_memory_allocated(i)),
                "total": int(torch.cuda.get_device_properties(i).total_memory),
            } for i in range(torch.cuda.device_count())]
    except Exception as exc:  # noqa: BLE001 - a broken device must not hide the original error
        log.warning("could not read GPU memory: %s", exc)
    process = psutil.Process()
    info["host_rss"] = int(process.memory_info().rss)
    info["host_peak_rss"] = max(info["host_rss"], int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024)
    info["host_total"] = int(psutil.virtual_memory().total)
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY:
        info["address_space_limit"] = int(limit)
    return info


def _failed_device(memory: dict[str, Any]) -> Any:
    """The device the run failed on, for the estimator: the first GPU, else the host's usable memory."""
    from tunedeck.core.estimate.devices import Device, known_gpu

    gpus = memory.get("gpus") or []
    if gpus:
        import torch

        name = torch.cuda.get_device_properties(0).name
        table = known_gpu(name)
        kind = "rocm" if getattr(torch.version, "hip", None) else "cuda"
        return Device(name, gpus[0]["total"], kind, table.bf16 if table else kind == "cuda",
                      table.fused_attention if table else True)
    usable = min(memory["host_total"], memory.get("address_space_limit", memory["host_total"]))
    return Device("CPU (host RAM)", usable, "cpu", False)


def ranked_suggestions(config: Config, memory: dict[str, Any], longest: int | None) -> list[dict[str, Any]]:
    """The estimator's changes that would have fitted, cheapest first, as event dicts ([] when unknown)."""
    from tunedeck.core.estimate.architecture import resolve_architecture
    from tunedeck.core.estimate.verdict import oom_suggestions

    try:
        arch = resolve_architecture(config.model.name_or_path)
        found = oom_suggestions(config, arch, _failed_device(memory), seq_len=longest)
    except Exception as exc:  # noqa: BLE001 - the estimator must never hide the original error
        log.warning("no memory suggestions: %s", exc)
        return []
    return [s.to_dict() for s in found]


def suggestion_hint(suggestion: dict[str, Any]) -> str:
    changes = " ".join(f"--set {k}={str(v).lower() if isinstance(v, bool) else v}"
                       for k, v in suggestion["set"].items())
    return f"{changes}: {suggestion['why']} (estimate {suggestion['estimate_gib']:.1f} GiB)"


def oom_error(exc: BaseException, config: Config | None, step: int | None, longest: int | None = None) -> Error:
    """The error event of an out-of-memory: step, memory at the time, and the estimator's ranked changes."""
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    memory = memory_now()
    suggestions = ranked_suggestions(config, memory, longest) if config is not None else []
    hints = [suggestion_hint(s) for s in suggestions] or list(OOM_HINTS)
    where = f" at step {step}" if step else ""
    return Error(kind="oom", message=f"out of memory{where}: {first}", hints=hints, step=step, memory=memory,
                 suggestions=suggestions)


def comm_error(exc: BaseException, step: int | None) -> Error:
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    return Error(kind="crash", message=f"NCCL/RCCL communication failed: {type(exc).__name__}: {first}",
                 hints=list(COMM_HINTS), step=step)
