"""`tunedeck estimate --preset NAME | CONFIG [--json] [--probe]`: peak memory per GPU before launch."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tunedeck.core.config_files import dump_config, load_config
from tunedeck.core.errors import RunError
from tunedeck.core.estimate.architecture import resolve_architecture
from tunedeck.core.estimate.devices import choose_device
from tunedeck.core.estimate.longest import longest_sample
from tunedeck.core.estimate.memory import GIB, TERMS, Estimate, estimate_peak_memory
from tunedeck.core.estimate.probe import probe_config
from tunedeck.core.estimate.verdict import suggestions, verdict
from tunedeck.core.jobs.process import worker_argv

TERM_LABELS = {"weights": "weights", "lora": "LoRA parameters", "gradients": "gradients",
               "optimizer": "optimizer states", "activations": "activations", "logits": "logits",
               "overhead": "overhead"}


def register(commands: argparse._SubParsersAction) -> None:
    estimate = commands.add_parser(
        "estimate", help="peak memory per GPU of a config, with a verdict and the cheapest fix",
        description="Estimate the peak memory per GPU of a run (weights, LoRA, gradients, optimizer states, "
                    "activations, logits, overhead), say whether it fits, and which single change makes it fit.")
    estimate.add_argument("config_file", nargs="?", type=Path, help="a config file (after --preset, if given)")
    estimate.add_argument("--preset", default=argparse.SUPPRESS, help="preset to start from")
    estimate.add_argument("--set", action="append", default=argparse.SUPPRESS, dest="overrides",
                          metavar="KEY=VALUE", help="override one value (repeatable)")
    estimate.add_argument("--gpu", help="estimate for this GPU (mi50, h100, a100-40, rtx4090, ...)")
    estimate.add_argument("--gpu-mem", type=float, metavar="GIB", help="memory per GPU in GiB")
    estimate.add_argument("--seq-len", type=int, help="longest sample in tokens (default: measured from the data)")
    estimate.add_argument("--no-data", action="store_true", help="use data.cutoff_len as the longest sample")
    estimate.add_argument("--probe", action="store_true",
                          help="also run two optimizer steps on the longest batch here and report the measured peak")
    estimate.add_argument("--json", action="store_true", help="print JSON")
    estimate.set_defaults(func=estimate_command)


def estimate_command(args: argparse.Namespace, open_app=None) -> int:
    files = [*map(Path, args.config), *([args.config_file] if args.config_file else [])]
    config = load_config(preset=args.preset, files=files, overrides=args.overrides)
    arch = resolve_architecture(config.model.name_or_path)
    device = choose_device(args.gpu, args.gpu_mem, args.preset, detect=True)
    probe = run_probe(config) if args.probe else None
    if probe is not None and "out_of_memory" not in probe:
        longest, source = probe["longest_sample"], "the longest sample, as the probe tokenized it"
    elif args.seq_len:
        longest, source = args.seq_len, "--seq-len"
    elif args.no_data:
        longest, source = None, f"data.cutoff_len ({config.data.cutoff_len})"
    else:
        longest, source = longest_sample(config)
    report = build_report(config, arch, device, longest, source, probe)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def build_report(config, arch, device, longest: int | None, source: str, probe: dict | None) -> dict[str, Any]:
    estimate = estimate_peak_memory(config, arch, device, seq_len=longest)
    report: dict[str, Any] = {
        "model": config.model.name_or_path, "architecture": arch.name, "architecture_source": arch.source,
        "seq_len_source": source,
        "lora": {"r": config.lora.r, "target_modules": config.lora.target_modules},
        **estimate.to_dict(), "verdict": verdict(estimate), "suggestions": [],
    }
    if report["verdict"] != "fits":
        found = suggestions(config, arch, device, seq_len=longest, longest=longest)
        report["suggestions"] = [{**s.to_dict(), "args": s.set_args()} for s in found]
    if probe is not None:
        single = estimate if estimate.world_size == 1 and not estimate.zero_stage else \
            estimate_peak_memory(probe_config(config), arch, device, seq_len=longest)
        report["probe"] = probe_comparison(probe, single)
    return report


def probe_comparison(probe: dict[str, Any], estimate: Estimate) -> dict[str, Any]:
    """The measured peaks next to the estimate of what the allocator holds (the context is not measured).

    The probe runs one process on one GPU, so it is compared with the estimate for one GPU without ZeRO."""
    if "out_of_memory" in probe:
        return {**probe, "estimated_allocated": estimate.allocated}
    measured = probe["peak_allocated"]
    return {**probe, "estimated_allocated": estimate.allocated,
            "ratio": [round(m / estimate.allocated, 3) if estimate.allocated else None for m in measured]}


def run_probe(config) -> dict[str, Any]:
    """Two optimizer steps on the longest batch in a worker subprocess; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="tunedeck-probe-") as folder:
        (Path(folder) / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        print("probing: two optimizer steps on the longest batch (loads the model)…", file=sys.stderr)
        result = subprocess.run(worker_argv("probe", folder), stdout=subprocess.PIPE, text=True)  # log: our stderr
        if result.returncode != 0 or not result.stdout.strip():
            raise RunError(f"the probe failed (exit {result.returncode})", where="tunedeck estimate --probe",
                           hint="its log is above; the estimate without --probe still works")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _gib(value: float) -> str:
    return f"{value / GIB:8.2f} GiB"


def format_report(report: dict[str, Any]) -> str:
    device = report["device"]
    per_gpu = report["per_gpu_bytes"]
    ckpt = "on" if report["gradient_checkpointing"] else "off"
    where = f"on this host's CPU ({device['memory'] / GIB:.1f} GiB RAM)" if device["kind"] == "cpu" else \
        f"per GPU on {report['world_size']} x {device['name']} ({device['memory'] / GIB:.1f} GiB)"
    lines = [
        f"memory estimate for {report['model']} · LoRA r={report['lora']['r']} "
        f"({report['trainable_params'] / 1e6:.1f}M trainable of {report['base_params'] / 1e9:.2f}B) · "
        f"{report['precision']}",
        f"{where}, ZeRO stage {report['zero_stage']}, batch {report['batch_size']} x {report['seq_len']} tokens "
        f"({report['seq_len_source']}), gradient checkpointing {ckpt}",
        "",
    ]
    for term in TERMS:
        lines.append(f"  {TERM_LABELS[term]:18}{_gib(per_gpu[term])}")
    other = report["activations_without_checkpointing_bytes" if ckpt == "on" else
                    "activations_with_checkpointing_bytes"]
    lines.append(f"  {'':18}(activations with checkpointing {'off' if ckpt == 'on' else 'on'}: "
                 f"{other / GIB:.2f} GiB)")
    lines.append(f"  {'total':18}{_gib(report['total_bytes'])}  of {device['memory'] / GIB:.1f} GiB "
                 f"({report['fraction']:.0%})")
    if report["host_offload_bytes"]:
        lines.append(f"  {'in host RAM':18}{_gib(report['host_offload_bytes'])}  (ZeRO offload)")
    lines += [f"  note: {note}" for note in report["notes"]]
    lines.append(f"verdict: {report['verdict']}")
    if report["suggestions"]:
        lines.append("cheapest changes that make it fit:")
        for index, s in enumerate(report["suggestions"], 1):
            lines.append(f"  {index}. {s['args']}  -> {s['estimate_gib']:.1f} GiB: {s['why']}")
    elif report["verdict"] != "fits":
        lines.append("no single change makes it fit: combine them, or use more GPUs with ZeRO-3")
    if "probe" in report:
        lines.extend(_probe_lines(report["probe"]))
    return "\n".join(lines)


def _probe_lines(probe: dict[str, Any]) -> list[str]:
    if "out_of_memory" in probe:
        return [f"probe: ran out of memory, so this config does not fit here ({probe['out_of_memory']})"]
    what = "model tensors + peak of torch's CPU allocator" if probe["accelerator"] == "cpu" \
        else "torch.cuda.max_memory_allocated"
    lines = [f"probe: {probe['steps']} optimizer steps on the longest batch ({probe['batch_size']} x "
             f"{probe['longest_sample']} tokens) in {probe['seconds']:.1f} s; measured {what}:"]
    for index, (peak, ratio) in enumerate(zip(probe["peak_allocated"], probe["ratio"], strict=False)):
        label = "host" if probe["accelerator"] == "cpu" else f"GPU {index}"
        lines.append(f"  {label}: measured {peak / GIB:.2f} GiB vs estimated {probe['estimated_allocated'] / GIB:.2f} "
                     f"GiB (measured / estimated = {ratio})")
    if probe.get("host_peak_rss_growth"):
        lines.append(f"  host peak RSS grew by {probe['host_peak_rss_growth'] / GIB:.2f} GiB over the process before "
                     "the model was loaded (includes freed memory glibc keeps, and Python's own heap)")
    return lines
