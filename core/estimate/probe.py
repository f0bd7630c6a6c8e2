"""The measured probe: two optimizer steps on the longest batch with the run's real setup; peak memory out.

Runs inside `python -m tunedeck.core.worker probe DIR` (DIR holds config.yaml). On GPUs the peak is
torch.cuda.max_memory_allocated per device. On a CPU there is no such counter: the peak is the model's
tensors plus the highest running total of torch's CPU allocator while training (the profiler's allocation
records); the process's peak resident memory (VmHWM) less its resident memory before the model was loaded is
reported too, and is higher: glibc keeps freed blocks and the Python heap grows.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from pathlib import Path
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.jobs.runs import RunDir

PROBE_STEPS = 2


def _rss(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_host_peak() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current resident size."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _tensor_bytes(model: Any) -> int:
    """Bytes of the model's parameters and buffers, each storage once (tied weights share one)."""
    seen: dict[int, int] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _cpu_allocator_peak(train: Any) -> int:
    """Run train() under the profiler; the highest total of CPU allocator bytes allocated while it ran."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train()
    peak, stack = 0, list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        fields = node.extra_fields
        if type(fields).__name__ == "_ExtraFields_Allocation" and str(fields.device) == "cpu":
            peak = max(peak, int(fields.total_allocated))
        stack.extend(node.children)
    return peak


SINGLE_PROCESS = {"num_gpus": 1, "num_nodes": 1, "hostfile": None, "deepspeed_stage": 0,
                  "offload_optimizer": False, "offload_params": False}


def probe_config(config: Config) -> Config:
    """The run's config with only what the probe changes: two steps, no evaluation, no checkpoints, padded
    batches (its data is the longest batch), and one process (it measures one GPU without a launcher)."""
    data = config.model_dump()
    data["distributed"].update(SINGLE_PROCESS)
    data["train"].update(max_steps=PROBE_STEPS, batching="padded", eval_strategy="no", save_strategy="no",
                         load_best_at_end=False, early_stopping_patience=None, sample_prompts=[], logging_steps=1)
    return Config.model_validate(data)


def longest_batch(prepared: Any, batch: int, accumulation: int) -> tuple[Any, int]:
    """The longest batch (the `batch` longest training samples, padded to the longest), repeated for PROBE_STEPS
    optimizer steps; and the longest sample's length."""
    from datasets import Dataset

    lengths = [len(ids) for ids in prepared.train["input_ids"]]
    longest = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)[:batch]
    rows = prepared.train.select(longest)
    repeats = -(-batch * accumulation * PROBE_STEPS // len(longest))
    columns = {key: list(rows[key]) * repeats for key in rows.column_names}
    return Dataset.from_dict(columns), lengths[longest[0]]


def run_probe(folder: Path) -> dict[str, Any]:
    """Train PROBE_STEPS steps on the longest batch; the measured peaks, as a JSON-ready dict."""
    import torch

    from tunedeck.core.data.cache import TokenizedData
    from tunedeck.core.data.training_set import prepare_data
    from tunedeck.core.hardware.detect import detect_hardware, resolve_precision
    from tunedeck.core.models.loading import load_tokenizer, resolve_model_path
    from tunedeck.core.stream.events import EventWriter
    from tunedeck.core.training.recipe import _build_trainer, _configure_threads, _load_model

    run = RunDir(folder)
    config = probe_config(run.load_config())
    events = EventWriter(run.events_path)
    hardware = detect_hardware()
    precision = resolve_precision(config.train.precision, hardware)
    _configure_threads(config, hardware)
    model_path = resolve_model_path(config.model.name_or_path)
    tokenizer = load_tokenizer(model_path, config.model.trust_remote_code)
    prepared = prepare_data(config, tokenizer, events)
    t = config.train
    dataset, length = longest_batch(prepared, t.batch_size, t.gradient_accumulation_steps)
    gc.collect()
    on_gpu = hardware["accelerator"] != "cpu"
    before_model = _rss()
    model = _load_model(config, model_path, precision)
    probe_data = TokenizedData(dataset, dataset.select([]), [], prepared.key)
    trainer = _build_trainer(config, run, model, tokenizer, probe_data, precision, hardware, events,
                             threading.Event())
    gc.collect()
    if on_gpu:
        for index in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(index)
    reset = _reset_host_peak()
    before_train = _rss()
    started = time.perf_counter()
    if on_gpu:
        trainer.train()
    else:
        cpu_peak = _tensor_bytes(model) + _cpu_allocator_peak(trainer.train)
    result: dict[str, Any] = {
        "accelerator": hardware["accelerator"], "precision": precision, "longest_sample": length,
        "batch_size": t.batch_size, "steps": trainer.state.global_step,
        "seconds": round(time.perf_counter() - started, 2), "rss_before_model": before_model,
        "rss_before_train": before_train,
    }
    if on_gpu:
        result["peak_allocated"] = [int(torch.cuda.max_memory_allocated(i)) for i in range(torch.cuda.device_count())]
        result["peak_reserved"] = [int(torch.cuda.max_memory_reserved(i)) for i in range(torch.cuda.device_count())]
    else:
        peak = _rss("VmHWM")
        result["host_peak_rss"] = peak
        result["host_peak_rss_growth"] = max(0, peak - before_model) if reset else None
        result["peak_allocated"] = [cpu_peak]
    return result


def probe_main(folder: Path, out: Any) -> int:
    """Worker entry: run the probe and write its result as one JSON line to the machine stdout.

    Running out of memory is a result too: {"out_of_memory": message, "memory": at the time}."""
    from tunedeck.core.errors.classify import is_out_of_memory, memory_now

    try:
        result = run_probe(folder)
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is an answer; the rest propagates
        if not is_out_of_memory(exc):
            raise
        text = str(exc).strip()
        result = {"out_of_memory": text.splitlines()[0] if text else type(exc).__name__, "memory": memory_now()}
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0
