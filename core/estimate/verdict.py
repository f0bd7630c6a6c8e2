"""Whether an estimate fits its GPU, and the cheapest single changes of the config that make it fit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.estimate.architecture import Architecture
from tunedeck.core.estimate.devices import Device
from tunedeck.core.estimate.memory import GIB, Estimate, estimate_peak_memory

FITS_BELOW = 0.85  # of the GPU's memory: room for spikes the estimate does not see
MIN_CUTOFF = 256
MIN_RANK = 4


def verdict(estimate: Estimate) -> str:
    """fits (< 85% of the GPU), tight (85-100%) or will not fit."""
    if estimate.fraction < FITS_BELOW:
        return "fits"
    return "tight" if estimate.fraction < 1.0 else "will not fit"


@dataclass
class Suggestion:
    """One change of the config (as --set values), why it helps and what it costs, with the new estimate."""

    changes: dict[str, Any]
    why: str
    cost: float  # lower is cheaper: what the user gives up (speed, data, capacity, quality)
    estimate: int = 0  # bytes per GPU after the change

    def set_args(self) -> str:
        return " ".join(f"--set {key}={_yaml(value)}" for key, value in self.changes.items())

    def to_dict(self) -> dict[str, Any]:
        return {"set": dict(self.changes), "why": self.why, "estimate_gib": round(self.estimate / GIB, 2)}


def _yaml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def apply_changes(config: Config, changes: dict[str, Any]) -> Config:
    """A copy of the config with dotted-key changes applied and validated."""
    data = config.model_dump()
    for key, value in changes.items():
        section, name = key.split(".", 1)
        data[section][name] = value
    return Config.model_validate(data)


def _halvings(start: int, floor: int) -> Iterator[tuple[int, int]]:
    value, step = start, 0
    while value // 2 >= floor:
        value, step = value // 2, step + 1
        yield value, step


def candidates(config: Config, device: Device, longest: int | None) -> Iterator[list[Suggestion]]:
    """Each lever as a list of ever stronger steps; the first step that fits is the one offered."""
    t, d, lora = config.train, config.distributed, config.lora
    world = d.num_gpus * d.num_nodes
    effective = t.batch_size * t.gradient_accumulation_steps
    yield [Suggestion({"train.batch_size": b, "train.gradient_accumulation_steps": t.gradient_accumulation_steps
                       * (t.batch_size // b)},
                      f"batch {t.batch_size} -> {b} with gradient accumulation x{t.batch_size // b}: the same "
                      f"effective batch ({effective}), a little slower", 1.0 + 0.25 * (n - 1))
           for b, n in _halvings(t.batch_size, 1)]
    if not t.gradient_checkpointing:
        yield [Suggestion({"train.gradient_checkpointing": True},
                          "recompute activations in the backward pass: ~30% slower", 2.0)]
    if world > 1 and d.deepspeed_stage == 0:
        yield [Suggestion({"distributed.deepspeed_stage": 2},
                          f"ZeRO-2 shards optimizer states and gradients over {world} GPUs", 1.5)]
    if not d.offload_optimizer:
        stage = {"distributed.deepspeed_stage": 2} if d.deepspeed_stage == 0 else {}
        yield [Suggestion({**stage, "distributed.offload_optimizer": True},
                          "ZeRO offload keeps optimizer states in host RAM: slower steps, more host memory", 3.0)]
    cut = [(c, n) for c, n in _halvings(config.data.cutoff_len, MIN_CUTOFF) if longest is None or c < longest]
    yield [Suggestion({"data.cutoff_len": c}, f"cutoff {config.data.cutoff_len} -> {c}: longer samples are cut"
                      + (f" (the longest has {longest} tokens)" if longest else ""), 4.0 + 0.5 * (n - 1))
           for c, n in cut]
    yield [Suggestion({"lora.r": r, "lora.alpha": max(1, lora.alpha * r // lora.r)},
                      f"LoRA rank {lora.r} -> {r} (alpha scaled with it): a smaller adapter, less capacity",
                      5.0 + 0.5 * (n - 1))
           for r, n in _halvings(lora.r, MIN_RANK)]
    if config.model.quantization == "none" and device.kind == "cuda":
        yield [Suggestion({"model.quantization": "4bit"},
                          "QLoRA: the frozen base in 4-bit NF4 (bitsandbytes, NVIDIA only): some quality loss", 6.0)]


def suggestions(config: Config, arch: Architecture, device: Device, seq_len: int | None = None,
                limit: int | None = None, longest: int | None = None) -> list[Suggestion]:
    """Single changes that bring the per-GPU estimate under `limit` (default: 85% of the GPU), cheapest first.

    Batch halvings keep the effective batch by doubling gradient accumulation; cutoff halvings that cut no
    sample (all shorter than the new cutoff) are not offered, since they would change nothing.
    """
    limit = limit if limit is not None else int(FITS_BELOW * device.memory)
    found: list[Suggestion] = []
    for steps in candidates(config, device, longest):
        for suggestion in steps:
            changed = apply_changes(config, suggestion.changes)
            suggestion.estimate = estimate_peak_memory(changed, arch, device, seq_len).total
            if suggestion.estimate < limit:
                found.append(suggestion)
                break
    return sorted(found, key=lambda s: (s.cost, s.estimate))


def oom_suggestions(config: Config, arch: Architecture, device: Device, seq_len: int | None = None) -> list[Suggestion]:
    """After a real out-of-memory: the changes that fit even if the estimate was too low for this run.

    The run needed more than the device has. If the estimate thought it fit, it was short by at least
    memory / estimate, so a change must also bring the estimate 15% under this run's own estimate.
    """
    current = estimate_peak_memory(config, arch, device, seq_len).total
    limit = int(FITS_BELOW * min(device.memory, current))
    return suggestions(config, arch, device, seq_len, limit=limit)
