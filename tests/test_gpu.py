"""On a CUDA machine: the h100 preset trains with DeepSpeed ZeRO-2 through the launcher, and `gpu` events carry
the memory nvidia-ml-py reports. Deselected by default; run with `pytest -m gpu tests/test_gpu.py`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunedeck.core.config_files import load_config
from tunedeck.core.jobs.runs import create_run
from tunedeck.core.stream.events import Gpu, RunFinished, RunStarted, Step, read_events

pytestmark = pytest.mark.gpu
MIB = 1 << 20


def _cuda_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() and torch.version.cuda else 0


def _nvml():
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"NVML unavailable: {exc}")
    return pynvml


@pytest.fixture(scope="module")
def gpus() -> int:
    count = _cuda_gpus()
    if not count:
        pytest.skip("needs an NVIDIA GPU")
    return count


def test_gpu_events_carry_the_memory_nvml_reports(gpus):
    import torch

    from tunedeck.core.hardware.monitor import GpuSampler

    nvml = _nvml()
    block = torch.empty(2048 * MIB, dtype=torch.uint8, device="cuda:0")  # 2 GiB that NVML must see
    torch.cuda.synchronize()
    readings: list[Gpu] = []
    sampler = GpuSampler(lambda e: readings.append(e) if isinstance(e, Gpu) else None, interval_s=0.2).start()
    time.sleep(1.0)
    sampler.stop()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    truth = nvml.nvmlDeviceGetMemoryInfo(handle)
    latest = [r for r in readings if r.index == 0][-1]
    assert latest.mem_total == int(truth.total)
    assert abs(latest.mem_used - int(truth.used)) < 256 * MIB  # other processes may allocate in between
    assert latest.mem_used >= 2048 * MIB
    assert {r.index for r in readings} == set(range(nvml.nvmlDeviceGetCount()))
    del block


def test_doctor_on_the_gpu_measures_and_recommends_bf16(gpus, tmp_path):
    result = subprocess.run([sys.executable, "-m", "tunedeck.core.cli.main", "doctor", "--json", "--runs-dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    assert report["accelerator"] == "cuda" and len(report["gpus"]) == gpus
    gflops = report["matmul"]["gflops"]
    assert report["matmul"]["device"].startswith("cuda") and gflops["bf16"] > gflops["fp32"]
    assert report["recommended_precision"] == "bf16"  # Ampere and newer: bf16 as fast as fp16
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["GPU 0"]["status"] == "ok" and "NVIDIA" in checks["GPU 0"]["detail"]
    assert all(c["status"] == "ok" for name, c in checks.items() if name.startswith("kernels for"))


def test_h100_preset_trains_with_deepspeed_zero2(gpus, builtin_model_dir, tmp_path):
    pytest.importorskip("deepspeed")
    nvml = _nvml()
    config = load_config(preset="h100", overrides=[
        f"model.name_or_path={builtin_model_dir}", "model.template=auto", "data.path=builtin:demo_identity.json",
        "data.cutoff_len=256", "lora.r=16", "lora.alpha=32", "train.max_steps=6", "train.batch_size=4",
        "train.gradient_accumulation_steps=2", "train.eval_strategy=no", "train.save_strategy=no",
        "train.load_best_at_end=false", f"distributed.num_gpus={gpus}", "distributed.deepspeed_stage=2",
    ])
    run = create_run(tmp_path / "runs", config, "h100-zero2", preset="h100")
    result = subprocess.run([sys.executable, "-m", "tunedeck.core.worker", "train", str(run.path)],
                            capture_output=True, text=True, timeout=1200)
    log = (run.path / "worker.log").read_text() if (run.path / "worker.log").exists() else ""
    assert result.returncode == 0, (result.stderr + log)[-4000:]

    deepspeed = json.loads((run.path / "deepspeed.json").read_text())
    assert deepspeed["zero_optimization"]["stage"] == 2 and deepspeed["bf16"]["enabled"] is True
    launch = json.loads((run.path / "launch.json").read_text())
    assert "--use_deepspeed" in launch["argv"] and launch["precision"] == "bf16"

    events = list(read_events(run.events_path))
    started = [e for e in events if isinstance(e, RunStarted)]
    assert len(started) == 1 and started[0].world_size == gpus and started[0].precision == "bf16"
    steps = [e.step for e in events if isinstance(e, Step)]
    assert steps == list(range(1, 7))  # one line per optimizer step, from rank 0 only
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert len(finished) == 1 and finished[0].status == "completed"
    assert (Path(finished[0].adapter) / "adapter_model.safetensors").is_file()

    readings = [e for e in events if isinstance(e, Gpu) and e.index >= 0]
    assert {r.index for r in readings} == set(range(nvml.nvmlDeviceGetCount()))
    for index in range(gpus):
        total = int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index)).total)
        mine = [r for r in readings if r.index == index]
        assert all(r.mem_total == total for r in mine)
        assert max(r.mem_used for r in mine) > 256 * MIB  # the model and optimizer were resident
    assert run.read_status()["status"] == "completed"
