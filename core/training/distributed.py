"""Multi-GPU runs: rank facts, the DeepSpeed config, the hostfile and the `accelerate launch` command line."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import DistributedConfig
from tunedeck.core.errors import ConfigError
from tunedeck.core.jobs.process import worker_argv
from tunedeck.core.stream.events import Error, Event, Gpu, Host, Log

HOSTFILE_LINE = re.compile(r"^(?P<host>[A-Za-z0-9._-]+)\s+slots=(?P<slots>\d+)\s*$")
MIXED_PRECISION = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def local_world_size() -> int:
    """Processes on this node (torchrun: LOCAL_WORLD_SIZE, DeepSpeed's launcher: LOCAL_SIZE)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or world_size())


def node_rank() -> int:
    """Which node this process runs on (torchrun: GROUP_RANK, DeepSpeed's launcher: CROSS_RANK)."""
    explicit = os.environ.get("GROUP_RANK") or os.environ.get("CROSS_RANK")
    return int(explicit) if explicit else rank() // max(local_world_size(), 1)


def under_launcher() -> bool:
    """True in a process started by accelerate / torchrun / DeepSpeed (they set RANK and LOCAL_RANK)."""
    return "RANK" in os.environ and "LOCAL_RANK" in os.environ


def is_main_process() -> bool:
    """Rank 0 alone writes step / eval / checkpoint / run_finished events and status.json."""
    return rank() == 0


def uses_deepspeed(dist: DistributedConfig) -> bool:
    """ZeRO stages need DeepSpeed; so do several nodes (its hostfile launcher starts them all)."""
    return dist.deepspeed_stage > 0 or dist.num_nodes > 1


def deepspeed_config(dist: DistributedConfig, precision: str) -> dict[str, Any]:
    """The DeepSpeed config for a run; 'auto' values are filled from the Trainer's arguments."""
    zero: dict[str, Any] = {"stage": dist.deepspeed_stage, "overlap_comm": True, "contiguous_gradients": True,
                            "reduce_bucket_size": "auto"}
    if dist.deepspeed_stage == 2:
        zero.update(allgather_partitions=True, allgather_bucket_size=200_000_000, reduce_scatter=True)
    if dist.deepspeed_stage == 3:
        zero.update(stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto",
                    stage3_max_live_parameters=1_000_000_000, stage3_max_reuse_distance=1_000_000_000,
                    stage3_gather_16bit_weights_on_model_save=True)
    if dist.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if dist.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "loss_scale_window": 1000,
                 "initial_scale_power": 16, "hysteresis": 2, "min_loss_scale": 1},
        "bf16": {"enabled": precision == "bf16"},
        "zero_optimization": zero,
        "steps_per_print": 1_000_000_000,  # progress goes through tunedeck's events, not DeepSpeed's prints
        "wall_clock_breakdown": False,
    }
    if dist.offload_optimizer:
        # Offloaded optimizer states need DeepSpeed's CPU Adam (the cpu_adam op `tunedeck doctor` checks).
        config["optimizer"] = {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                           "weight_decay": "auto"}}
    return config


def parse_hostfile(path: Path) -> list[tuple[str, int]]:
    """(host, slots) per node from a DeepSpeed hostfile; errors name the file, the line and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the hostfile: {exc.strerror}", where=str(path),
                          hint="set distributed.hostfile to an existing file, or list distributed.hosts") from None
    nodes = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = HOSTFILE_LINE.match(line)
        if not match:
            raise ConfigError(f"line {number}: '{raw.strip()}' is not 'HOST slots=N'", where=str(path),
                              hint="one node per line, e.g. 'node1 slots=2'")
        nodes.append((match["host"], int(match["slots"])))
    if not nodes:
        raise ConfigError("the hostfile lists no node", where=str(path), hint="add lines like 'node1 slots=2'")
    return nodes


def check_hostfile(nodes: list[tuple[str, int]], dist: DistributedConfig, path: Path) -> None:
    if len(nodes) != dist.num_nodes:
        raise ConfigError(f"the hostfile lists {len(nodes)} nodes but distributed.num_nodes is {dist.num_nodes}",
                          where=str(path), hint=f"set distributed.num_nodes: {len(nodes)}")
    for host, slots in nodes:
        if slots != dist.num_gpus:
            raise ConfigError(f"{host} has slots={slots} but distributed.num_gpus is {dist.num_gpus}",
                              where=str(path), hint=f"give every node slots={dist.num_gpus}")


def hostfile_text(hosts: list[str], slots: int) -> str:
    return "".join(f"{host} slots={slots}\n" for host in hosts)


def launch_argv(dist: DistributedConfig, precision: str, run_path: Path, deepspeed_file: Path | None = None,
                hostfile: Path | None = None, resume: bool = False) -> list[str]:
    """`accelerate launch` (run through this interpreter) starting the training worker on every GPU."""
    argv = [sys.executable, "-m", "accelerate.commands.launch",
            "--num_processes", str(dist.world_size), "--num_machines", str(dist.num_nodes),
            "--mixed_precision", MIXED_PRECISION[precision], "--main_process_port", str(dist.main_process_port)]
    if uses_deepspeed(dist):
        if deepspeed_file is None:
            raise ValueError("a DeepSpeed launch needs its config file")
        argv += ["--use_deepspeed", "--deepspeed_config_file", str(deepspeed_file)]
    else:
        argv += ["--multi_gpu"]
    if dist.num_nodes > 1:
        if hostfile is None:
            raise ValueError("a multi-node launch needs a hostfile")
        argv += ["--deepspeed_hostfile", str(hostfile), "--deepspeed_multinode_launcher", dist.multinode_launcher,
                 "--machine_rank", "0"]
        if dist.main_process_ip:
            argv += ["--main_process_ip", dist.main_process_ip]
    argv += worker_argv("train", run_path)[1:]  # accelerate runs `-m tunedeck.core.worker ...` itself
    return argv + (["--resume"] if resume else [])


def write_json(path: Path, data: dict[str, Any]) -> Path:
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


class RankEvents:
    """The event writer one process sees: rank 0 writes everything; other ranks write only their errors and
    warnings (named by rank) and, on the first process of each other node, that node's `gpu` and `host` readings."""

    def __init__(self, writer: Any):
        self.writer = writer
        self.rank = rank()
        self.node = node_rank()
        self.multi_node = world_size() > local_world_size()

    @property
    def path(self) -> Path:
        return self.writer.path

    def emit(self, event: Event) -> Event:
        if isinstance(event, Gpu | Host):
            if self.multi_node:
                event.node = self.node
            return self.writer.emit(event)
        if self.rank == 0:
            return self.writer.emit(event)
        if isinstance(event, Error) or (isinstance(event, Log) and event.level in ("warning", "error")):
            event.message = f"rank {self.rank}: {event.message}"
            return self.writer.emit(event)
        return event

    def close(self) -> None:
        self.writer.close()


def agreed_stop(wanted: bool, device: Any) -> bool:
    """Whether any rank wants to stop: every rank must leave the loop at the same step, or the next
    collective would wait forever."""
    import torch
    import torch.distributed as torch_dist

    if not (torch_dist.is_available() and torch_dist.is_initialized()) or torch_dist.get_world_size() == 1:
        return wanted
    flag = torch.tensor([1.0 if wanted else 0.0], device=device)
    torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
    return bool(flag.item())


def die_with_parent() -> None:
    """A rank ends when its launcher dies (the launcher starts ranks in sessions of their own, so killing the
    run's process group would leave them running)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
