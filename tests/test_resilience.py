"""Stop, resume, kill -9 and early stopping on real worker processes training a tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tunedeck.core.config_files import load_config
from tunedeck.core.jobs.runs import RunDir, create_run, start_worker
from tunedeck.core.models.loading import cache_dir
from tunedeck.core.stream.events import Checkpoint, Error, Log, RunFinished, RunStarted, Step, read_events
from tunedeck.core.stream.tail import RunTail
from tunedeck.core.training.checkpoints import NO_MANIFEST, TEST_PAUSE, check_complete


def math_rows(n: int) -> list[dict]:
    return [{"instruction": f"What is {a} plus {a}?", "output": f"{a} plus {a} is {2 * a}."} for a in range(n)]


def make_run(tmp_path: Path, model_dir: Path, label: str, *overrides: str, rows: list[dict] | None = None) -> RunDir:
    data = tmp_path / "train.json"
    data.write_text(json.dumps(rows or math_rows(24)), encoding="utf-8")
    config = load_config(overrides=[
        f"model.name_or_path={model_dir}", f"data.path={data}", "data.val_size=0", "data.cutoff_len=64",
        "lora.r=8", "lora.alpha=16", "lora.dropout=0", "train.batch_size=4", "train.gradient_accumulation_steps=1",
        "train.learning_rate=5e-3", "train.warmup_ratio=0.1", "train.gradient_checkpointing=false",
        "train.eval_strategy=no", "train.save_strategy=no", *overrides,
    ])
    return create_run(tmp_path / "runs", config, label)


def wait_for(predicate, timeout: float = 300.0, every: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def steps_of(run: RunDir) -> list[Step]:
    return [e for e in read_events(run.events_path) if isinstance(e, Step)] if run.events_path.exists() else []


def resume_cli(run: RunDir, tunedeck_cmd) -> subprocess.CompletedProcess:
    return subprocess.run([*tunedeck_cmd, "resume", run.run_id, "--headless", "--runs-dir", str(run.path.parent)],
                          capture_output=True, text=True, timeout=600)


def test_sigterm_stops_with_a_checkpoint_and_resume_continues_the_same_curve(tmp_path, tiny_model_dir,
                                                                             tunedeck_cmd):
    reference = make_run(tmp_path, tiny_model_dir, "reference", "train.max_steps=10")
    assert start_worker(reference).wait(timeout=600) == 0

    run = make_run(tmp_path, tiny_model_dir, "stopped", "train.max_steps=10")
    proc = start_worker(run)
    wait_for(lambda: len(steps_of(run)) >= 3 or proc.poll() is not None)
    assert proc.poll() is None, run.log_path.read_text()[-2000:]
    assert run.stop(pid=proc.pid)
    assert proc.wait(timeout=300) == 0
    events = list(read_events(run.events_path))
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "stopped"
    stopped_at = finished.final_step
    assert 3 <= stopped_at < 10
    assert [e.step for e in events if isinstance(e, Checkpoint)] == [stopped_at]
    assert check_complete(run.checkpoints / f"checkpoint-{stopped_at}") is None
    assert run.read_status()["status"] == "stopped"

    result = resume_cli(run, tunedeck_cmd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"resumed at step {stopped_at}" in result.stdout
    events = list(read_events(run.events_path))
    assert [e.resumed_from_step for e in events if isinstance(e, RunStarted)] == [0, stopped_at]
    steps = [e.step for e in events if isinstance(e, Step)]
    assert steps == list(range(1, 11))  # no gap, no repeat
    assert events[-1].status == "completed" and events[-1].final_step == 10
    # Same optimizer, scheduler and data order: the resumed curve is the uninterrupted one.
    expected = {s.step: s.loss for s in steps_of(reference)}
    for step in steps_of(run):
        assert abs(step.loss - expected[step.step]) < 1e-4, (step.step, step.loss, expected[step.step])


def test_kill_9_while_a_checkpoint_is_written_resumes_from_the_previous_complete_one(tmp_path, tiny_model_dir,
                                                                                     tunedeck_cmd):
    run = make_run(tmp_path, tiny_model_dir, "killed", "train.max_steps=12", "train.save_strategy=steps",
                   "train.save_steps=2", "train.save_total_limit=5", "train.load_best_at_end=false")
    proc = start_worker(run)
    newest = run.checkpoints / "checkpoint-4"
    wait_for(newest.is_dir, every=0.001)
    os.killpg(proc.pid, signal.SIGKILL)  # wherever it is inside writing checkpoint-4
    proc.wait(timeout=60)
    torn = newest / "optimizer.pt"
    if torn.exists():  # tear it as a crash mid-write would (even if the write won the race, or its files all landed)
        torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    assert check_complete(newest) is not None
    assert check_complete(run.checkpoints / "checkpoint-2") is None
    assert run.effective_status() == "failed"

    result = resume_cli(run, tunedeck_cmd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "skipping checkpoint-4" in result.stdout
    events = list(read_events(run.events_path))
    assert [e.resumed_from_step for e in events if isinstance(e, RunStarted)][-1] == 2
    history = RunTail(run.events_path).replay()  # a resume from step 2 drops the steps trained again
    assert list(history.steps["step"]) == list(range(1, 13))
    assert events[-1].status == "completed" and events[-1].final_step == 12
    assert any(p.name.startswith("incomplete-checkpoint-4") for p in run.checkpoints.iterdir())


@pytest.mark.slow
def test_kill_9_between_a_checkpoints_files_and_its_manifest_keeps_the_older_and_recovers_the_newer(
        tmp_path, tiny_model_dir, tunedeck_cmd, monkeypatch):
    run = make_run(tmp_path, tiny_model_dir, "window", "train.max_steps=8", "train.save_strategy=steps",
                   "train.save_steps=2", "train.save_total_limit=1", "train.load_best_at_end=false")
    monkeypatch.setenv(TEST_PAUSE, "checkpoint-written:4")  # the worker stops right before checkpoint-4's manifest
    proc = start_worker(run)
    monkeypatch.delenv(TEST_PAUSE)
    try:
        wait_for(lambda: "test hook: paused at checkpoint-written (step 4)" in run.log_path.read_text()
                 or proc.poll() is not None, every=0.1)
        assert proc.poll() is None, run.log_path.read_text()[-2000:]
        # the window: checkpoint-4 holds every file but no manifest, and with save_total_limit 1 the checkpoint it
        # replaces is still there and complete (the Trainer's own rotation had deleted it by now)
        assert check_complete(run.checkpoints / "checkpoint-4") == NO_MANIFEST
        assert check_complete(run.checkpoints / "checkpoint-2") is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)

    run.path.chmod(0o755)  # someone opened the run folder up meanwhile
    result = resume_cli(run, tunedeck_cmd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "checkpoint-4 has no completion manifest" in result.stdout and "recovered" in result.stdout
    assert "the run folder was open to others (mode 755): made private" in result.stdout
    assert run.path.stat().st_mode & 0o777 == 0o700
    assert (cache_dir() / "tokenized").stat().st_mode & 0o777 == 0o700  # the tokenized training data too
    events = list(read_events(run.events_path))
    assert [e.resumed_from_step for e in events if isinstance(e, RunStarted)] == [0, 4]
    assert [e.step for e in events if isinstance(e, Step)] == list(range(1, 9))  # no gap, no repeat
    assert events[-1].status == "completed" and events[-1].final_step == 8
    assert sorted(p.name for p in run.checkpoints.glob("checkpoint-*")) == ["checkpoint-8"]  # rotation goes on


def test_rising_eval_loss_stops_early_and_keeps_the_best_checkpoint(tmp_path, tiny_model_dir):
    colours = ["red", "blue", "green", "black", "white", "pink", "grey", "brown"]
    train = [{"instruction": f"Name colour {i}.", "output": " ".join([colours[i % 8]] * 12)} for i in range(16)]
    val = [{"instruction": f"Name colour {i}.", "output": " ".join([colours[(i + 3) % 8]] * 12)} for i in range(8)]
    (tmp_path / "val.json").write_text(json.dumps(val), encoding="utf-8")
    run = make_run(tmp_path, tiny_model_dir, "overfit", f"data.val_path={tmp_path / 'val.json'}",
                   "train.max_steps=30", "train.batch_size=16", "train.learning_rate=2e-2",
                   "train.lr_scheduler=constant", "train.warmup_ratio=0", "train.eval_strategy=steps",
                   "train.eval_steps=1", "train.save_strategy=steps", "train.save_steps=1", "train.save_total_limit=2",
                   "train.early_stopping_patience=3", rows=train)
    assert start_worker(run).wait(timeout=600) == 0
    events = list(read_events(run.events_path))
    evals = RunTail(run.events_path).replay().evals
    best = min(evals, key=lambda e: e.eval_loss)
    finished = events[-1]
    assert finished.status == "completed" and finished.final_step < 30
    assert finished.final_step == best.step + 3
    assert all(e.eval_loss >= best.eval_loss for e in evals if e.step > best.step)
    assert finished.best_checkpoint.endswith(f"checkpoint-{best.step}")
    assert run.read_status()["best_checkpoint"] == finished.best_checkpoint
    assert any(isinstance(e, Log) and "stopped early" in e.message for e in events)
    kept = sorted(p.name for p in run.checkpoints.glob("checkpoint-*"))
    assert kept == sorted({f"checkpoint-{best.step}", f"checkpoint-{finished.final_step}"})
    # load_best_at_end: adapter/ holds the best checkpoint's weights, not the last ones
    from safetensors.torch import load_file

    adapter = load_file(run.adapter / "adapter_model.safetensors")
    best_weights = load_file(Path(finished.best_checkpoint) / "adapter_model.safetensors")
    assert adapter.keys() == best_weights.keys()
    assert all((adapter[k] == best_weights[k]).all() for k in adapter)


def test_resume_refuses_completed_running_and_unknown_runs(tmp_path, tunedeck_cmd):
    runs = tmp_path / "runs"
    done = runs / "done-run"
    done.mkdir(parents=True)
    (done / "config.yaml").write_text("{}\n", encoding="utf-8")
    (done / "status.json").write_text(json.dumps({"status": "completed"}), encoding="utf-8")
    busy = runs / "busy-run"
    busy.mkdir()
    (busy / "config.yaml").write_text("{}\n", encoding="utf-8")
    (busy / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}), encoding="utf-8")
    for run_id, expected in [("done-run", "already completed"), ("busy-run", "already running"),
                             ("no-such-run", "no run 'no-such-run'")]:
        result = subprocess.run([*tunedeck_cmd, "resume", run_id, "--headless", "--runs-dir", str(runs)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs (root only), unmounted afterwards; skipped with the reason where it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_fails_the_run_readably_and_keeps_every_complete_checkpoint(
        tmp_path, tiny_model_dir, small_disk, tunedeck_cmd):
    data = tmp_path / "train.json"
    data.write_text(json.dumps(math_rows(24)), encoding="utf-8")
    config = load_config(overrides=[
        f"model.name_or_path={tiny_model_dir}", f"data.path={data}", "data.val_size=0", "data.cutoff_len=64",
        "lora.r=8", "lora.alpha=16", "train.batch_size=4", "train.gradient_accumulation_steps=1",
        "train.gradient_checkpointing=false", "train.eval_strategy=no", "train.save_strategy=steps",
        "train.save_steps=1", "train.save_total_limit=100", "train.max_steps=200", "train.load_best_at_end=false",
    ])
    run = create_run(small_disk / "runs", config, "full")
    proc = start_worker(run)
    assert proc.wait(timeout=600) == 1, run.log_path.read_text(errors="replace")[-2000:]

    events = list(read_events(run.events_path))
    errors = [e for e in events if isinstance(e, Error)]
    finished = events[-1]
    assert len(errors) == 1 and errors[0].kind == "disk", errors
    failed_at = errors[0].step
    assert failed_at and f"the disk is full while writing checkpoint-{failed_at} in {run.checkpoints}" in \
        errors[0].message
    assert " free, a checkpoint needs about " in errors[0].message and " MiB" in errors[0].message
    assert any(f"tunedeck resume {run.run_id}" in hint for hint in errors[0].hints)
    assert isinstance(finished, RunFinished) and finished.status == "failed" and finished.final_step == failed_at
    assert [e.step for e in events if isinstance(e, Step)] == list(range(1, failed_at + 1))
    status = run.read_status()
    assert status["status"] == "failed" and status["error_kind"] == "disk" and status["step"] == failed_at
    kept = sorted(int(p.name.split("-")[1]) for p in run.checkpoints.glob("checkpoint-*"))
    assert kept == list(range(1, failed_at)) and failed_at > 1  # the unfinished one went, every complete one stayed
    assert all(check_complete(run.checkpoints / f"checkpoint-{n}") is None for n in kept)

    # the disk stays full: a resume says so on one line and starts nothing
    with open(small_disk / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    before = run.events_path.read_bytes()
    result = subprocess.run([*tunedeck_cmd, "resume", run.run_id, "--headless", "--runs-dir", str(run.root.parent)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.startswith(f"tunedeck: the disk is full in {run.root}") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "B free" in result.stderr
    assert run.events_path.read_bytes() == before and run.holder() is None
