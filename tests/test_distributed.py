"""Multi-GPU runs: the DeepSpeed config, the launch command, hostfiles, and rank-0-only events (2 real CPU ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.core.config import Config, DistributedConfig
from tunedeck.core.config_files import load_config
from tunedeck.core.errors import ConfigError
from tunedeck.core.jobs.runs import RunDir, create_run
from tunedeck.core.stream.events import (
    Checkpoint,
    Error,
    EventWriter,
    Gpu,
    Host,
    Log,
    RunFinished,
    RunStarted,
    Step,
    read_events,
)
from tunedeck.core.training.checkpoints import newest_complete
from tunedeck.core.training.distributed import (
    RankEvents,
    check_hostfile,
    deepspeed_config,
    hostfile_text,
    launch_argv,
    parse_hostfile,
)
from tunedeck.core.training.launch import launch_record, plan_launch


def dist(**fields) -> DistributedConfig:
    return DistributedConfig(**fields)


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_the_deepspeed_config_carries_the_stage_and_leaves_batch_sizes_to_the_trainer(stage):
    config = deepspeed_config(dist(num_gpus=2, deepspeed_stage=stage), "bf16")
    zero = config["zero_optimization"]
    assert zero["stage"] == stage
    assert config["bf16"]["enabled"] is True and config["fp16"]["enabled"] is False
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping"):
        assert config[key] == "auto"
    assert "offload_optimizer" not in zero and "offload_param" not in zero and "optimizer" not in config
    assert ("stage3_gather_16bit_weights_on_model_save" in zero) == (stage == 3)
    json.dumps(config)  # it is written as JSON


def test_offload_moves_optimizer_and_params_to_cpu_with_deepspeeds_adam():
    config = deepspeed_config(dist(num_gpus=2, deepspeed_stage=3, offload_optimizer=True, offload_params=True),
                              "fp16")
    zero = config["zero_optimization"]
    assert zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    assert config["optimizer"]["type"] == "AdamW" and config["optimizer"]["params"]["lr"] == "auto"
    assert config["fp16"]["enabled"] is True and config["fp16"]["loss_scale"] == 0  # dynamic loss scaling
    assert config["bf16"]["enabled"] is False
    fp32 = deepspeed_config(dist(num_gpus=2, deepspeed_stage=2, offload_optimizer=True), "fp32")
    assert not fp32["fp16"]["enabled"] and not fp32["bf16"]["enabled"]
    assert "offload_param" not in fp32["zero_optimization"]


def test_two_gpus_with_zero2_launch_accelerate_with_the_deepspeed_file(tmp_path):
    argv = launch_argv(dist(num_gpus=2, deepspeed_stage=2), "bf16", tmp_path / "run", tmp_path / "ds.json")
    assert argv[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    text = " ".join(argv[3:])
    assert "--num_processes 2 --num_machines 1 --mixed_precision bf16" in text
    assert f"--use_deepspeed --deepspeed_config_file {tmp_path / 'ds.json'}" in text
    assert argv[-4:] == ["-m", "tunedeck.core.worker", "train", str(tmp_path / "run")]
    assert "--multi_gpu" not in argv and "--deepspeed_hostfile" not in argv


def test_two_gpus_without_zero_use_plain_data_parallel_and_resume_is_passed_on(tmp_path):
    argv = launch_argv(dist(num_gpus=2), "fp32", tmp_path / "run", resume=True)
    assert "--multi_gpu" in argv and "--use_deepspeed" not in argv
    assert argv[argv.index("--mixed_precision") + 1] == "no"
    assert argv[-2:] == [str(tmp_path / "run"), "--resume"]


def test_multi_node_goes_through_the_hostfile(tmp_path):
    hostfile = tmp_path / "hostfile"
    config = dist(num_gpus=2, num_nodes=2, hosts=["node1", "node2"], main_process_ip="10.0.0.1")
    argv = launch_argv(config, "fp16", tmp_path / "run", tmp_path / "ds.json", hostfile)
    text = " ".join(argv)
    assert "--num_processes 4 --num_machines 2" in text
    assert f"--deepspeed_hostfile {hostfile} --deepspeed_multinode_launcher pdsh --machine_rank 0" in text
    assert "--main_process_ip 10.0.0.1" in text and "--use_deepspeed" in text


def test_hostfiles_are_read_and_bad_lines_are_named(tmp_path):
    good = tmp_path / "hosts"
    good.write_text("# the main node first\nnode1 slots=2\n\nnode2 slots=2  # second\n")
    assert parse_hostfile(good) == [("node1", 2), ("node2", 2)]
    bad = tmp_path / "bad"
    bad.write_text("node1 slots=2\nnode2 gpus=2\n")
    with pytest.raises(ConfigError) as info:
        parse_hostfile(bad)
    assert str(bad) in info.value.one_line() and "line 2" in info.value.one_line()
    assert "node1 slots=2" in info.value.hint


def test_config_checks_nodes_against_hosts():
    with pytest.raises(ValueError, match="needs distributed.hostfile or distributed.hosts"):
        dist(num_nodes=2)
    with pytest.raises(ValueError, match="lists 1 nodes but num_nodes is 2"):
        dist(num_nodes=2, hosts=["a"])
    assert dist(num_gpus=8, num_nodes=2, hosts=["a", "b"]).world_size == 16


def test_other_ranks_write_only_errors_warnings_and_gpu_readings(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    events = RankEvents(EventWriter(tmp_path / "events.jsonl"))
    events.emit(Step(step=1, epoch=0.1, loss=2.0, lr=1e-4))
    events.emit(Log(level="info", message="loading model"))
    events.emit(RunFinished(status="completed"))
    events.emit(Log(level="warning", message="slow disk"))
    events.emit(Error(kind="oom", message="out of memory"))
    events.emit(Gpu(index=1, name="gpu", mem_used=1, mem_total=2))
    events.emit(Host(ram_used=1, ram_total=2))
    written = list(read_events(tmp_path / "events.jsonl"))
    assert [type(e).__name__ for e in written] == ["Log", "Error", "Gpu", "Host"]
    assert written[0].message == "rank 1: slow disk" and written[1].message == "rank 1: out of memory"
    assert written[2].node is None and written[3].node is None  # one node: no node tag


def _trainer_bits(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "checkpoints"), use_cpu=True, report_to="none")
    state = TrainerState(global_step=1, max_steps=3, epoch=0.5)
    return args, state, TrainerControl()


def test_only_rank_0s_callback_writes_steps_and_status(tmp_path, monkeypatch):
    from tunedeck.core.training.callbacks import EventCallback  # loads transformers: only where it is needed

    run = create_run(tmp_path / "runs", Config(), "ranks")
    before = run.read_status()
    args, state, control = _trainer_bits(tmp_path)
    monkeypatch.setenv("RANK", "1")
    callback = EventCallback(run, EventWriter(run.events_path), samples_per_step=4)
    callback.on_train_begin(args, state, control)
    callback.on_log(args, state, control, logs={"loss": 2.5, "learning_rate": 1e-4, "num_tokens": 100})
    callback.on_log(args, state, control, logs={"eval_loss": 2.4})
    callback.on_save(args, state, control)
    assert not run.events_path.exists() or run.events_path.read_text() == ""
    assert run.read_status() == before

    monkeypatch.setenv("RANK", "0")
    callback = EventCallback(run, EventWriter(run.events_path), samples_per_step=4)
    callback.on_train_begin(args, state, control)
    callback.on_log(args, state, control, logs={"loss": 2.5, "learning_rate": 1e-4, "num_tokens": 100})
    assert [type(e).__name__ for e in read_events(run.events_path)] == ["Step"]
    assert run.read_status()["loss"] == 2.5


def test_a_two_gpu_config_on_a_machine_without_them_fails_with_the_fix(tmp_path):
    run = create_run(tmp_path / "runs", load_config(overrides=["distributed.num_gpus=2"]), "two")
    result = subprocess.run([sys.executable, "-m", "tunedeck.core.worker", "train", str(run.path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    events = list(read_events(run.events_path))
    error = next(e for e in events if isinstance(e, Error))
    assert error.kind == "config" and "distributed.num_gpus is 2 but this machine has 0 usable GPU(s)" in error.message
    assert "set distributed.num_gpus: 1 and deepspeed_stage: 0" in error.hints[0]
    assert isinstance(events[-1], RunFinished) and events[-1].status == "failed"
    assert run.read_status()["status"] == "failed"


TWO_GPUS = {"accelerator": "cuda", "gpus": [{"index": i, "name": "GPU", "memory": 80 << 30, "arch": "sm_90"}
                                            for i in (0, 1)]}


def test_the_launch_plan_is_written_into_the_run_for_the_ranks(tmp_path):
    run = create_run(tmp_path / "runs", load_config(overrides=["distributed.num_gpus=2"]), "plan")
    plan = plan_launch(run, run.load_config(), TWO_GPUS, "bf16", resume=True)
    record = launch_record(run)
    assert record["precision"] == "bf16" and record["world_size"] == 2 and record["argv"] == plan.argv
    assert "--multi_gpu" in plan.argv and plan.argv[-1] == "--resume" and record["deepspeed_config"] is None
    assert not (run.path / "deepspeed.json").exists()


def test_zero_without_deepspeed_installed_names_the_install_command(tmp_path):
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    run = create_run(tmp_path / "runs", load_config(preset="mi50-2x"), "mi50")
    with pytest.raises(ConfigError) as info:
        plan_launch(run, run.load_config(), TWO_GPUS, "fp16")
    assert "deepspeed_stage 2 needs DeepSpeed" in info.value.message
    assert "pip install 'tunedeck[deepspeed]'" in info.value.hint


def test_hosts_become_a_hostfile_checked_against_the_config(tmp_path):
    config = dist(num_gpus=2, num_nodes=2, hosts=["node1", "node2"])
    path = tmp_path / "hostfile"
    path.write_text(hostfile_text(config.hosts, config.num_gpus))
    assert path.read_text() == "node1 slots=2\nnode2 slots=2\n"
    check_hostfile(parse_hostfile(path), config, path)
    with pytest.raises(ConfigError, match="node1 has slots=2 but distributed.num_gpus is 4"):
        check_hostfile(parse_hostfile(path), dist(num_gpus=4, num_nodes=2, hostfile=str(path)), path)
    with pytest.raises(ConfigError, match="lists 2 nodes but distributed.num_nodes is 3"):
        check_hostfile(parse_hostfile(path), dist(num_gpus=2, num_nodes=3, hostfile=str(path)), path)


@pytest.mark.slow
def test_two_real_cpu_ranks_write_one_step_per_optimizer_step(tmp_path: Path, tiny_model_dir: Path):
    """The exact `accelerate launch --multi_gpu` command tunedeck builds, run with two CPU ranks (gloo)."""
    from tests.test_train_e2e import tiny_run

    run: RunDir = tiny_run(tmp_path, tiny_model_dir, "train.batch_size=3", "train.save_strategy=no",
                           "train.eval_strategy=no", "train.load_best_at_end=false")
    command = launch_argv(dist(num_gpus=2, main_process_port=29533), "fp32", run.path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    events = list(read_events(run.events_path))
    started = [e for e in events if isinstance(e, RunStarted)]
    assert len(started) == 1 and started[0].world_size == 2
    assert [s.step for s in events if isinstance(s, Step)] == [1, 2, 3]
    assert sum(isinstance(e, RunFinished) for e in events) == 1 and events[-1].status == "completed"
    assert sum(isinstance(e, Log) and e.message.startswith("loading model") for e in events) == 1
    assert not [e for e in events if isinstance(e, Error)]
    assert (run.adapter / "adapter_config.json").is_file() and not (run.path / ".adapter-partial").exists()
    assert run.read_status()["status"] == "completed"


@pytest.mark.slow
def test_stopping_a_two_rank_run_stops_both_at_the_same_step_with_one_checkpoint(tmp_path: Path,
                                                                                 tiny_model_dir: Path):
    """SIGTERM to the launcher's process group (what `s` on the runs screen sends) reaches both ranks."""
    import signal
    import time

    from tests.test_train_e2e import tiny_run

    run = tiny_run(tmp_path, tiny_model_dir, "train.batch_size=3", "train.max_steps=500", "train.save_strategy=no",
                   "train.eval_strategy=no", "train.load_best_at_end=false")
    command = launch_argv(dist(num_gpus=2, main_process_port=29534), "fp32", run.path)
    with open(tmp_path / "launcher.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 600
        while not (run.events_path.exists() and any(isinstance(e, Step) for e in read_events(run.events_path))):
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "launcher.log").read_text()
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=300)
    events = list(read_events(run.events_path))
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert len(finished) == 1 and finished[0].status == "stopped", (tmp_path / "launcher.log").read_text()[-3000:]
    saved = [e.step for e in events if isinstance(e, Checkpoint)]
    assert saved == [finished[0].final_step] and finished[0].final_step < 500
    step, path = newest_complete(run.checkpoints)
    assert step == finished[0].final_step and path.name == f"checkpoint-{step}"
    assert run.read_status()["status"] == "stopped"


@pytest.mark.slow
def test_killing_the_launcher_takes_the_ranks_with_it(tmp_path: Path, tiny_model_dir: Path):
    """Stop now (SIGKILL to the run's process group) must not leave ranks, which run in sessions of their own."""
    import signal
    import time

    from tests.test_train_e2e import tiny_run

    run = tiny_run(tmp_path, tiny_model_dir, "train.batch_size=3", "train.max_steps=500", "train.save_strategy=no",
                   "train.eval_strategy=no", "train.load_best_at_end=false")
    command = launch_argv(dist(num_gpus=2, main_process_port=29535), "fp32", run.path)
    with open(tmp_path / "launcher.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 600
        while not (run.events_path.exists() and any(isinstance(e, Step) for e in read_events(run.events_path))):
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "launcher.log").read_text()
            time.sleep(0.2)

    def ranks() -> list[str]:
        found = subprocess.run(["pgrep", "-f", f"worker train {run.path}"], capture_output=True, text=True)
        return [pid for pid in found.stdout.split() if int(pid) != proc.pid]

    assert len(ranks()) == 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while ranks() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ranks() == []
