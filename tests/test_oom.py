"""Out-of-memory that explains itself: a tiny real run fails to allocate; its error event has step, memory, fixes."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.core.config_files import load_config
from tunedeck.core.errors.classify import classify
from tunedeck.core.jobs.runs import create_run
from tunedeck.core.stream.events import Error, RunFinished, read_events

GIB = 1 << 30
BATCH, WORDS = 32, 1000  # 32 samples of ~1000 tokens: logits of 32k tokens x 49152 vocab need 6 GiB in fp32


def address_space(limit: int):
    def lower_limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return lower_limit


def _virtual_peak_after_setup(model_dir: Path) -> int:
    """VmPeak of a process that imports the training stack and loads the tiny model: what the worker needs."""
    code = (
        "import tunedeck.core.training.recipe, trl, peft, datasets\n"
        "from transformers import AutoModelForCausalLM\n"
        f"AutoModelForCausalLM.from_pretrained({str(model_dir)!r})\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmPeak')][0].split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1]) * 1024


@pytest.fixture(scope="module")
def too_big(tiny_model_dir, tmp_path_factory) -> tuple[list[str], int]:
    """--set overrides of a tiny run whose batch cannot be allocated under the limit, and the limit (RLIMIT_AS)."""
    rows = [{"instruction": f"Repeat the word {i}.", "input": "", "output": " ".join(["tune"] * WORDS)}
            for i in range(BATCH * 2)]
    data = tmp_path_factory.mktemp("oom") / "long.json"
    data.write_text(json.dumps(rows))
    overrides = [
        f"model.name_or_path={tiny_model_dir}", f"data.path={data}", "data.cutoff_len=1100", "data.val_size=0",
        f"train.batch_size={BATCH}", "train.gradient_accumulation_steps=1", "train.max_steps=2",
        "train.precision=fp32", "train.gradient_checkpointing=false", "train.eval_strategy=no",
        "train.save_strategy=no", "train.cache_tokenized=false", "train.num_threads=2",
    ]
    return overrides, _virtual_peak_after_setup(tiny_model_dir) + 2 * GIB  # room to load, not to train


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
def test_a_run_that_cannot_allocate_reports_step_memory_and_ranked_fixes(too_big, tmp_path):
    overrides, limit = too_big
    config = load_config(overrides=overrides)
    run = create_run(tmp_path / "runs", config, "oom")

    env = {**os.environ, "TUNEDECK_NO_GPU_SAMPLING": "1"}
    with open(run.log_path, "ab") as log:
        proc = subprocess.run([sys.executable, "-m", "tunedeck.core.worker", "train", str(run.path)],
                              stdout=log, stderr=log, preexec_fn=address_space(limit), env=env, timeout=900)
    events = list(read_events(run.events_path))
    errors = [e for e in events if isinstance(e, Error)]
    assert proc.returncode == 1, run.log_path.read_text()[-3000:]
    assert errors, run.log_path.read_text()[-3000:]
    error = errors[-1]
    assert error.kind == "oom", error.message
    assert error.step == 1 and "at step 1" in error.message
    assert error.memory["address_space_limit"] == limit
    assert 0 < error.memory["host_rss"] <= error.memory["host_peak_rss"]
    assert error.suggestions, "the estimator offers changes"
    first = error.suggestions[0]
    assert first["set"] == {"train.batch_size": BATCH // 2, "train.gradient_accumulation_steps": 2} or \
        first["set"]["train.batch_size"] < BATCH  # batch halving keeps the effective batch and is cheapest
    assert first["set"]["train.gradient_accumulation_steps"] * first["set"]["train.batch_size"] == BATCH
    assert all({"set", "why", "estimate_gib"} <= s.keys() for s in error.suggestions)
    assert error.hints[0].startswith("--set train.batch_size=")
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert finished and finished[-1].status == "failed"
    assert run.read_status()["error_kind"] == "oom"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux")
def test_a_probe_that_runs_out_of_memory_says_so(too_big):
    overrides, limit = too_big
    args = [arg for pair in (("--set", o) for o in overrides) for arg in pair]
    result = subprocess.run([sys.executable, "-m", "tunedeck.core.cli", "estimate", *args, "--probe", "--json"],
                            capture_output=True, text=True, preexec_fn=address_space(limit), timeout=900,
                            env={**os.environ, "TUNEDECK_NO_GPU_SAMPLING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert "can't allocate memory" in report["probe"]["out_of_memory"]
    assert report["probe"]["memory"]["address_space_limit"] == limit
    assert "samples in" in report["seq_len_source"]  # without the probe's number, measured from the data


def test_nccl_and_rccl_failures_are_crashes_that_say_what_to_check():
    error = classify(RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error, "
                                  "NCCL version 2.21.5\nncclSystemError: System call failed"), step=7)
    assert error.kind == "crash" and "NCCL/RCCL" in error.message and error.step == 7
    assert any("NCCL_DEBUG=INFO" in hint for hint in error.hints)
    timeout = classify(RuntimeError("[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=5)"))
    assert timeout.kind == "crash" and "NCCL/RCCL" in timeout.message


def test_a_gpu_oom_message_gets_the_estimators_changes():
    config = load_config(preset="cpu-demo")
    exc = RuntimeError("CUDA out of memory. Tried to allocate 9.28 GiB. GPU 0 has a total capacity of 79.10 GiB")
    error = classify(exc, config, step=3)
    assert error.kind == "oom" and error.step == 3 and "at step 3" in error.message
    assert "host_rss" in error.memory  # no GPU here: the host's numbers are still recorded
    assert error.suggestions and error.hints[0].startswith("--set ")
    plain = classify(MemoryError())
    assert plain.kind == "oom" and plain.hints  # without a config: the general advice
