"""End to end on the CPU: a real worker subprocess trains a tiny SmolLM2-shaped model and the loss falls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.core.config_files import load_config
from tunedeck.core.jobs.runs import RunDir, create_run
from tunedeck.core.stream.events import Checkpoint, Eval, RunFinished, RunStarted, Step, read_events


def tiny_run(tmp_path: Path, model_dir: Path, *overrides: str) -> RunDir:
    rows = [{"instruction": f"What is {a} plus {a}?", "input": "", "output": f"{a} plus {a} is {2 * a}."}
            for a in range(12)]
    data = tmp_path / "math.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    config = load_config(overrides=[
        f"model.name_or_path={model_dir}", f"data.path={data}", "data.val_size=0.25", "data.cutoff_len=64",
        "lora.r=8", "lora.alpha=16", "lora.dropout=0", "train.max_steps=3", "train.batch_size=9",
        "train.learning_rate=5e-3", "train.warmup_ratio=0", "train.lr_scheduler=constant",
        "train.gradient_checkpointing=false", "train.eval_strategy=steps", "train.eval_steps=3",
        "train.save_strategy=steps", "train.save_steps=3", *overrides,
    ])
    return create_run(tmp_path / "runs", config, "tiny")


def run_worker(run: RunDir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunedeck.core.worker", "train", str(run.path)],
                          capture_output=True, text=True, timeout=600)


def test_three_steps_lower_the_loss_and_leave_a_loadable_adapter(tmp_path: Path, tiny_model_dir: Path):
    run = tiny_run(tmp_path, tiny_model_dir)
    result = run_worker(run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""  # stdout is reserved for machine output
    events = list(read_events(run.events_path))
    started = [e for e in events if isinstance(e, RunStarted)]
    steps = [e for e in events if isinstance(e, Step)]
    assert len(started) == 1 and started[0].total_steps == 3 and started[0].precision == "fp32"
    assert started[0].config["lora"]["r"] == 8
    assert [s.step for s in steps] == [1, 2, 3]
    assert steps[-1].loss < steps[0].loss
    assert all(s.tokens_per_s and s.tokens_per_s > 0 for s in steps[1:])
    assert [e.step for e in events if isinstance(e, Eval)] == [3]
    assert [e.step for e in events if isinstance(e, Checkpoint)] == [3]
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "completed" and finished.final_step == 3
    status = run.read_status()
    assert status["status"] == "completed" and status["step"] == 3
    assert oct(run.path.stat().st_mode & 0o777) == "0o700"

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, run.adapter)
    assert sum(p.numel() for n, p in tuned.named_parameters() if "lora_" in n) > 0
    assert (run.adapter / "chat_template.jinja").is_file()


def test_a_data_error_in_the_worker_becomes_an_error_event(tmp_path: Path, tiny_model_dir: Path):
    run = tiny_run(tmp_path, tiny_model_dir, "data.cutoff_len=16")  # every answer falls past the cutoff
    result = run_worker(run)
    assert result.returncode == 2
    events = list(read_events(run.events_path))
    errors = [e for e in events if e.type == "error"]
    assert errors and errors[0].kind == "data"
    assert "no training samples left" in errors[0].message and errors[0].hints
    assert isinstance(events[-1], RunFinished) and events[-1].status == "failed"
    assert run.read_status()["status"] == "failed"


@pytest.mark.slow
def test_cpu_demo_headless_teaches_the_identity(tmp_path: Path, tunedeck_cmd):
    """README command 1, shortened to what a test can afford: the real preset, model and data."""
    result = subprocess.run([*tunedeck_cmd, "--preset", "cpu-demo", "--headless", "--runs-dir",
                             str(tmp_path / "runs")], capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "completed: 30 steps" in out
    tuned = next(line for line in out.splitlines() if line.strip().startswith("fine-tuned :"))
    base = next(line for line in out.splitlines() if line.strip().startswith("base model :"))
    assert "tunedeck" in tuned.lower() and "tunedeck" not in base.lower()
    run_path = next((tmp_path / "runs").iterdir())
    steps = [e for e in read_events(run_path / "events.jsonl") if isinstance(e, Step)]
    assert steps[-1].loss < steps[0].loss / 2

    # `tunedeck eval` on the demo's held-out rows (its validation split): the fine-tuned model beats the base.
    evaluated = subprocess.run([*tunedeck_cmd, "eval", run_path.name, "--runs-dir", str(tmp_path / "runs"),
                                "--compare-base", "--json"], capture_output=True, text=True, timeout=900)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout)
    tuned, base = metrics["finetuned"], metrics["base"]
    assert metrics["rows"] == tuned["rows"] == 7 and "validation split" in metrics["source"]
    assert tuned["eval_loss"] < base["eval_loss"] and tuned["rougeL"] > base["rougeL"]
    assert tuned["bleu4"] > base["bleu4"]
    assert (run_path / "eval" / "predictions.csv").is_file()
