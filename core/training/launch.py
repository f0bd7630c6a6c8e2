"""The launch job of a multi-GPU run: resolve precision once, write the DeepSpeed config and hostfile,
run `accelerate launch` for every rank and report what the ranks could not."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.errors import ConfigError, TunedeckError
from tunedeck.core.errors.classify import classify
from tunedeck.core.hardware.detect import detect_hardware, resolve_precision
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import Error, EventWriter, Log, RunFinished, read_events
from tunedeck.core.training.distributed import (
    check_hostfile,
    deepspeed_config,
    hostfile_text,
    launch_argv,
    parse_hostfile,
    uses_deepspeed,
    write_json,
)

LAUNCH_FILE = "launch.json"
DEEPSPEED_FILE = "deepspeed.json"
HOSTFILE = "hostfile"


@dataclass
class LaunchPlan:
    precision: str
    world_size: int
    argv: list[str]
    deepspeed_config: str | None = None
    hostfile: str | None = None


def needs_launch(config: Config) -> bool:
    """Several processes, or DeepSpeed on one GPU (ZeRO-2/3 with CPU offload): accelerate starts the workers."""
    return config.distributed.world_size > 1 or uses_deepspeed(config.distributed)


def launch_record(run: RunDir) -> dict[str, Any] | None:
    """What the launch job decided for this run (its ranks read the precision and DeepSpeed file from it)."""
    try:
        return json.loads((run.path / LAUNCH_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def plan_launch(run: RunDir, config: Config, hardware: dict[str, Any], precision: str,
                resume: bool = False) -> LaunchPlan:
    """Write deepspeed.json / hostfile into the run folder and build the launch command for this config."""
    dist = config.distributed
    gpus = len(hardware.get("gpus") or [])
    if gpus < dist.num_gpus:
        hint = (f"set distributed.num_gpus: {gpus} (tunedeck doctor lists the GPUs)" if gpus else
                "multi-GPU and DeepSpeed runs need GPUs: set distributed.num_gpus: 1 and deepspeed_stage: 0 here "
                "(tunedeck doctor tells why torch sees none)")
        raise ConfigError(f"distributed.num_gpus is {dist.num_gpus} but this machine has {gpus} usable GPU(s)",
                          where="distributed.num_gpus", hint=hint)
    deepspeed_file = hostfile = None
    if uses_deepspeed(dist):
        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(f"distributed.deepspeed_stage {dist.deepspeed_stage} needs DeepSpeed, which is not "
                              "installed", where="distributed.deepspeed_stage",
                              hint="pip install 'tunedeck[deepspeed]', or deepspeed_stage: 0 for plain data parallel")
        deepspeed_file = write_json(run.path / DEEPSPEED_FILE, deepspeed_config(dist, precision))
    if dist.num_nodes > 1:
        if dist.hosts:
            hostfile = run.path / HOSTFILE
            hostfile.write_text(hostfile_text(dist.hosts, dist.num_gpus), encoding="utf-8")
        else:
            hostfile = Path(dist.hostfile)
        check_hostfile(parse_hostfile(hostfile), dist, hostfile)
    argv = launch_argv(dist, precision, run.path, deepspeed_file, hostfile, resume)
    plan = LaunchPlan(precision, dist.world_size, argv, str(deepspeed_file) if deepspeed_file else None,
                      str(hostfile) if hostfile else None)
    write_json(run.path / LAUNCH_FILE, asdict(plan))
    return plan


def _finished_since(run: RunDir, since: float) -> RunFinished | None:
    found = None
    for event in read_events(run.events_path):
        if isinstance(event, RunFinished) and event.t >= since:
            found = event
    return found


def prepare(run_path: Path, resume: bool = False) -> int:
    """Resolve the precision and write the launch files; run in a child process so that the launch job itself
    never holds a GPU context (and its memory) for the whole run."""
    run = RunDir(run_path)
    try:
        config = run.load_config()
        hardware = detect_hardware()
        plan_launch(run, config, hardware, resolve_precision(config.train.precision, hardware), resume)
    except Exception as exc:  # noqa: BLE001 - every failure must reach the event stream
        traceback.print_exc(file=sys.stderr)
        return _failed(run, EventWriter(run.events_path), exc)
    return 0


def run_launch(run_path: Path, resume: bool = False) -> int:
    """The process the runs screen and `tunedeck train` start for a multi-GPU run: it holds the run's lock and its
    pid stops the run (a stop signal reaches the ranks through the launcher, in the same process group)."""
    run = RunDir(run_path)
    lock = run.lock()
    try:
        return _launch(run, resume)
    finally:
        lock.release()


def _launch(run: RunDir, resume: bool) -> int:
    events = EventWriter(run.events_path)
    started = time.time()
    run.update_status(status="starting", pid=os.getpid())
    # This process only waits for the ranks: a stop signal is recorded, the ranks themselves stop.
    stops: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stops.append(signum))
    code = subprocess.run([sys.executable, "-m", "tunedeck.core.training.launch", str(run.path),
                           *(["--resume"] if resume else [])], stdin=subprocess.DEVNULL).returncode
    plan = launch_record(run)
    if code == 0 and plan and not stops:
        events.emit(Log(level="info", message=f"launching {plan['world_size']} processes ({plan['precision']}"
                        f"{', DeepSpeed' if plan['deepspeed_config'] else ''}): {' '.join(plan['argv'][1:])}"))
        sys.stdout.flush()
        code = subprocess.Popen(plan["argv"], stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}).wait()
    if _finished_since(run, started) is None:
        _report_lost_ranks(run, events, code, stopped=bool(stops))
    return code


def _report_lost_ranks(run: RunDir, events: EventWriter, code: int, stopped: bool) -> None:
    """The ranks ended without rank 0's run_finished: say so, so the run never looks alive or silent."""
    if stopped:
        events.emit(RunFinished(status="stopped", message=f"stopped (launcher exit code {code})"))
        run.update_status(status="stopped")
        return
    message = f"the launcher exited with code {code} before rank 0 finished; the ranks' output is in worker.log"
    events.emit(Error(kind="crash", message=message, hints=["the full traceback is in worker.log"]))
    events.emit(RunFinished(status="failed", message=message))
    run.update_status(status="failed", error=message, error_kind="crash")


def _failed(run: RunDir, events: EventWriter, exc: BaseException) -> int:
    error = events.emit(classify(exc))
    events.emit(RunFinished(status="failed", message=error.message))
    run.update_status(status="failed", error=error.message, error_kind=error.kind)
    return 2 if isinstance(exc, TunedeckError) else 1


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tunedeck.core.training.launch",
                                     description="Write a multi-GPU run's launch files (deepspeed.json, launch.json).")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return prepare(args.run_dir, args.resume)


if __name__ == "__main__":
    sys.exit(main())
