"""One job folder, one worker: the lock, stop signals, status and failures, on real worker processes and real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tunedeck.core.config import ExportConfig
from tunedeck.core.config_files import load_config
from tunedeck.core.errors import RunError
from tunedeck.core.evaluate.job import start_eval
from tunedeck.core.evaluate.layout import EvalLayout, EvalRequest
from tunedeck.core.export.job import start_export
from tunedeck.core.export.layout import ExportLayout
from tunedeck.core.jobs.folder import JobFolder
from tunedeck.core.jobs.process import worker_argv
from tunedeck.core.jobs.runner import Job, run_job
from tunedeck.core.jobs.runs import RunDir, create_run, resume_run, start_worker
from tunedeck.core.stream.events import (
    Error,
    EvalFinished,
    EventWriter,
    ExportFinished,
    Log,
    RunFinished,
    RunStarted,
    Step,
    read_events,
)
from tunedeck.core.training.checkpoints import MANIFEST, TEST_PAUSE
from tunedeck.core.training.rotation import PINS

from .conftest import save_nonzero_adapter
from .test_resilience import make_run, steps_of, wait_for

HOLD_LOCK = """
import sys, time
from pathlib import Path
from tunedeck.core.jobs.folder import JobFolder
JobFolder(Path(sys.argv[1])).lock()
print("locked", flush=True)
time.sleep(120)
"""


def bare_run(tmp_path: Path) -> RunDir:
    """A run folder with the default config; nothing trained (enough for everything before a model loads)."""
    return create_run(tmp_path / "runs", load_config(), "jobs")


def worker(mode: str, run: RunDir) -> subprocess.CompletedProcess:
    return subprocess.run(worker_argv(mode, run.root), capture_output=True, text=True, timeout=300)


def events_in(folder: JobFolder) -> list:
    return list(read_events(folder.events_path)) if folder.events_path.exists() else []


def test_worker_argv_is_this_interpreter_running_the_worker_module():
    assert worker_argv("probe", Path("/tmp/x")) == [sys.executable, "-m", "tunedeck.core.worker", "probe", "/tmp/x"]
    assert worker_argv("chat", "m", "--quant", "Q4_K_M", python="py")[0] == "py"


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path):
    folder = JobFolder(tmp_path / "job")
    folder.root.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert folder.holder() == holder.pid
        with pytest.raises(RunError, match=rf"already running \(pid {holder.pid}\)"):
            folder.lock()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert folder.lock_path.read_text().strip() == str(holder.pid)  # its pid is still written there...
    assert folder.holder() is None  # ...but the kernel released the lock with the process
    lock = folder.lock()
    assert folder.holder() == os.getpid()
    lock.release()
    assert folder.holder() is None


@pytest.mark.parametrize("layout_of, mode", [(ExportLayout.for_run, "export"), (EvalLayout.for_run, "eval")])
def test_a_second_export_or_eval_worker_exits_2_and_leaves_the_holder_alone(tmp_path: Path, layout_of, mode):
    run = bare_run(tmp_path)
    layout = layout_of(run)
    lock = layout.lock()  # this test process is the running job
    try:
        result = worker(mode, run)
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"already running (pid {os.getpid()})" in result.stderr
        assert "Traceback" not in result.stderr
        assert layout.holder() == os.getpid()
        assert events_in(layout) == [] and layout.read_status() == {}
        with pytest.raises(RunError, match=rf"already running \(pid {os.getpid()}\)"):
            layout.spawn(mode, run.root)  # every start goes through spawn: refused before a process exists
        assert layout.read_status() == {}
    finally:
        lock.release()


def test_resume_is_refused_while_a_process_holds_the_run(tmp_path: Path, tunedeck_cmd):
    run = bare_run(tmp_path)
    run.update_status(status="stopped")
    lock = run.lock()
    try:
        with pytest.raises(RunError, match=rf"already running \(pid {os.getpid()}\)"):
            resume_run(run)
        result = subprocess.run([*tunedeck_cmd, "resume", run.run_id, "--headless", "--runs-dir", str(run.root.parent)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and f"already running (pid {os.getpid()})" in result.stderr, result.stderr
        assert run.running()  # status.json says stopped; the lock says otherwise
    finally:
        lock.release()
    assert not run.running() and run.effective_status() == "stopped"


def test_a_failing_export_worker_reports_error_and_finished_events_and_status_failed(tmp_path: Path):
    run = bare_run(tmp_path)  # nothing trained: the export fails on the missing adapter
    result = worker("export", run)
    assert result.returncode == 2, result.stderr[-2000:]
    layout = ExportLayout.for_run(run)
    events = events_in(layout)
    assert [type(e) for e in events] == [Error, ExportFinished]
    assert events[0].kind == "run" and "no trained adapter" in events[0].message
    assert events[1].status == "failed" and events[1].message == events[0].message
    status = layout.read_status()
    assert status["status"] == "failed" and status["error_kind"] == "run" and status["error"] == events[0].message
    assert layout.holder() is None


def in_process_job(tmp_path: Path) -> Job:
    folder = JobFolder(tmp_path / "job")
    folder.root.mkdir()
    return Job(folder, EventWriter(folder.events_path).emit, EvalFinished, boundary="batch")


@pytest.mark.parametrize("exc, kind, code", [(ValueError("boom"), "crash", 1),
                                             (RunError("bad input", hint="fix it"), "run", 2)])
def test_a_body_that_raises_becomes_an_error_and_a_failed_finish(tmp_path: Path, exc, kind, code):
    job = in_process_job(tmp_path)
    before = signal.getsignal(signal.SIGTERM)

    seen = {}

    def body(cancel):
        seen.update(holder=job.folder.holder(), status=job.folder.read_status().get("status"))
        raise exc

    assert run_job(job, body) == code
    assert seen == {"holder": os.getpid(), "status": "running"}  # locked and running while the body ran
    events = events_in(job.folder)
    assert [type(e) for e in events] == [Error, EvalFinished]
    assert events[0].kind == kind and events[1].status == "failed" and events[1].message == events[0].message
    status = job.folder.read_status()
    assert status["status"] == "failed" and status["error_kind"] == kind and status["pid"] == os.getpid()
    assert job.folder.holder() is None and signal.getsignal(signal.SIGTERM) is before


def test_sigterm_cancels_the_body_and_the_job_ends_stopped(tmp_path: Path):
    job = in_process_job(tmp_path)

    def body(cancel: threading.Event):
        os.kill(os.getpid(), signal.SIGTERM)
        if not cancel.wait(30):
            raise AssertionError("the first SIGTERM did not set the cancel")
        raise InterruptedError("stopped between batches")

    assert run_job(job, body, exit_code=lambda done: 130 if done.status == "stopped" else 0) == 130
    events = events_in(job.folder)
    assert isinstance(events[0], Log) and events[0].message == "received SIGTERM: stopping after this batch"
    assert isinstance(events[-1], EvalFinished) and events[-1].status == "stopped"
    assert not any(isinstance(e, Error) for e in events)
    assert job.folder.read_status()["status"] == "stopped"


def test_a_completed_body_writes_its_final_status(tmp_path: Path):
    job = in_process_job(tmp_path)
    code = run_job(job, lambda cancel: EvalFinished(status="completed", metrics="m.json", message="5 rows"),
                   final_status=lambda done: {"message": done.message})
    assert code == 0
    assert [e.status for e in events_in(job.folder)] == ["completed"]
    assert job.folder.read_status()["status"] == "completed" and job.folder.read_status()["message"] == "5 rows"


def test_a_second_signal_stops_at_once_with_exit_130(tmp_path: Path):
    script = textwrap.dedent("""
        import os, signal, sys, time
        from pathlib import Path
        from tunedeck.core.jobs.folder import JobFolder
        from tunedeck.core.jobs.runner import Job, run_job
        from tunedeck.core.stream.events import EventWriter, ExportFinished

        folder = JobFolder(Path(sys.argv[1]))
        writer = EventWriter(folder.events_path)

        def body(cancel):  # a step that never reaches its boundary
            os.kill(os.getpid(), signal.SIGTERM)
            cancel.wait(30)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)

        sys.exit(run_job(Job(folder, writer.emit, ExportFinished), body))
    """)
    folder = JobFolder(tmp_path / "job")
    folder.root.mkdir()
    result = subprocess.run([sys.executable, "-c", script, str(folder.root)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    events = events_in(folder)
    assert [type(e) for e in events] == [Log, ExportFinished]
    assert events[1].status == "stopped" and "second signal" in events[1].message
    assert folder.read_status()["status"] == "stopped"
    assert folder.holder() is None


@pytest.mark.slow
def test_a_second_training_worker_exits_2_and_stop_reaches_the_lock_holder(tmp_path, tiny_model_dir, tunedeck_cmd):
    run = make_run(tmp_path, tiny_model_dir, "locked", "train.max_steps=5000")
    proc = start_worker(run)
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        wait_for(lambda: len(steps_of(run)) >= 2 or proc.poll() is not None)
        assert proc.poll() is None, run.log_path.read_text()[-2000:]
        assert run.holder() == proc.pid

        second = worker("train", run)
        assert second.returncode == 2 and f"already running (pid {proc.pid})" in second.stderr, second.stderr
        seen = len(steps_of(run))
        wait_for(lambda: len(steps_of(run)) > seen + 1 or proc.poll() is not None)
        assert proc.poll() is None  # the first keeps training
        assert run.read_status()["status"] == "running" and run.read_status()["pid"] == proc.pid

        run.update_status(pid=decoy.pid)  # status.json names another live process: the lock still decides
        stop = subprocess.run([*tunedeck_cmd, "stop", run.run_id, "--runs-dir", str(run.root.parent)],
                              capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert proc.wait(timeout=300) == 0
        assert decoy.poll() is None
    finally:
        for child in (proc, decoy):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
    events = list(read_events(run.events_path))
    assert [e.status for e in events if isinstance(e, RunFinished)] == ["stopped"]
    assert not any(isinstance(e, Error) for e in events)
    assert any(isinstance(e, Log) and e.message == "received SIGTERM: stopping after this step" for e in events)
    assert run.read_status()["status"] == "stopped" and run.holder() is None


@pytest.mark.slow
def test_a_training_worker_killed_with_sigkill_leaves_no_stale_lock(tmp_path, tiny_model_dir):
    run = make_run(tmp_path, tiny_model_dir, "killed", "train.max_steps=5000")
    starting = start_worker(run)
    assert run.holder() == starting.pid and run.effective_status() == "starting"
    os.killpg(starting.pid, signal.SIGKILL)  # killed before it took over: no stale lock, no endless 'starting'
    starting.wait(timeout=60)
    assert run.holder() is None and run.effective_status() == "failed"

    proc = start_worker(run)
    wait_for(lambda: run.read_status().get("pid") == proc.pid or proc.poll() is not None)
    assert proc.poll() is None, run.log_path.read_text()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert run.holder() is None and run.effective_status() == "failed"

    again = start_worker(run)  # the next start works: its starter hands the lock straight to it
    try:
        assert run.holder() == again.pid
        wait_for(lambda: run.read_status().get("pid") == again.pid or again.poll() is not None)
        assert again.poll() is None, run.log_path.read_text()[-2000:]
        assert run.read_status()["status"] == "running" and run.holder() == again.pid
        assert run.stop()
        assert again.wait(timeout=300) == 0
    finally:
        if again.poll() is None:
            os.killpg(again.pid, signal.SIGKILL)
    assert run.read_status()["status"] == "stopped"


@pytest.mark.slow
def test_export_and_eval_starts_are_refused_before_they_touch_a_running_jobs_files(tmp_path, tiny_model_dir):
    data = tmp_path / "train.json"
    data.write_text(json.dumps([{"instruction": f"Q{i}?", "output": f"A{i}."} for i in range(10)]), encoding="utf-8")
    config = load_config(overrides=[f"model.name_or_path={tiny_model_dir}", f"data.path={data}", "data.val_size=0.3"])
    run = create_run(tmp_path / "runs", config, "busy")
    save_nonzero_adapter(run, tiny_model_dir)
    for layout, start, request in ((ExportLayout.for_run(run), start_export, ExportConfig()),
                                   (EvalLayout.for_run(run), start_eval, EvalRequest())):
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.events_path.write_text('{"v": 1, "t": 1.0, "type": "log", "level": "info", "message": "mine"}\n')
        lock = layout.lock()
        try:
            with pytest.raises(RunError, match=rf"already running \(pid {os.getpid()}\)"):
                start(run, request)
        finally:
            lock.release()
        assert [e.message for e in events_in(layout)] == ["mine"] and not layout.request_path.exists()


@pytest.mark.parametrize("mode", ["export", "eval"])
def test_export_and_eval_refuse_a_checkpoint_that_is_still_being_written(tmp_path: Path, tiny_model_dir, mode):
    run = bare_run(tmp_path)
    save_nonzero_adapter(run, tiny_model_dir)
    shutil.copytree(run.adapter, run.checkpoints / "checkpoint-2")  # its files, but not yet its manifest
    if mode == "export":
        proc, layout = start_export(run, ExportConfig(checkpoint="2")), ExportLayout.for_run(run)
    else:
        proc, layout = start_eval(run, EvalRequest(checkpoint="2", max_rows=1)), EvalLayout.for_run(run)
    assert proc.wait(timeout=300) == 2, layout.log_path.read_text()[-2000:]
    error = next(e for e in events_in(layout) if isinstance(e, Error))
    assert "checkpoint-2 is not complete: it was never finished" in error.message
    assert layout.read_status()["status"] == "failed" and layout.holder() is None
    assert not list((run.checkpoints / PINS).glob("*"))  # nothing pinned stays behind


def wait_paused(run: RunDir, proc: subprocess.Popen, point: str) -> None:
    """Until the worker stopped itself at the TUNEDECK_TEST_PAUSE point (SIGSTOP: its state is 'T')."""
    def paused() -> bool:
        with open(f"/proc/{proc.pid}/stat", encoding="ascii") as handle:
            state = handle.read().split(") ", 1)[1][:1]
        return state == "T" and f"test hook: paused at {point}" in run.log_path.read_text()
    wait_for(lambda: proc.poll() is not None or paused(), every=0.05)
    assert proc.poll() is None, run.log_path.read_text()[-2000:]


@pytest.mark.slow
def test_eval_of_a_checkpoint_while_training_runs_keeps_it_from_rotation(tmp_path, tiny_model_dir, tunedeck_cmd,
                                                                         monkeypatch):
    run = make_run(tmp_path, tiny_model_dir, "rotating", "train.max_steps=5000", "train.save_strategy=steps",
                   "train.save_steps=1", "train.save_total_limit=1", "train.load_best_at_end=false")
    monkeypatch.setenv(TEST_PAUSE, "checkpoint-written:3")  # stops before step 3's rotation removes checkpoint-2
    proc = start_worker(run)
    monkeypatch.delenv(TEST_PAUSE)
    try:
        wait_paused(run, proc, "checkpoint-written")
        evaluation = subprocess.Popen(
            [*tunedeck_cmd, "eval", run.run_id, "--checkpoint", "2", "--data", str(tmp_path / "train.json"),
             "--max-rows", "2", "--max-new-tokens", "4", "--json", "--runs-dir", str(run.root.parent)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: list((run.checkpoints / PINS).glob("checkpoint-2.*")) or evaluation.poll() is not None)
        assert evaluation.poll() is None, evaluation.communicate()
        os.kill(proc.pid, signal.SIGCONT)  # training goes on, rotating after every step while the eval reads
        seen = len(steps_of(run))
        wait_for(lambda: len(steps_of(run)) >= seen + 3 or proc.poll() is not None)
        assert (run.checkpoints / "checkpoint-2").is_dir()  # pinned: rotation leaves it
        out, err = evaluation.communicate(timeout=600)
        assert evaluation.returncode == 0, err[-2000:]
        assert json.loads(out)["checkpoint"] == "checkpoint-2"
        wait_for(lambda: not (run.checkpoints / "checkpoint-2").exists() or proc.poll() is not None)
        assert proc.poll() is None and len(list(run.checkpoints.glob("checkpoint-*"))) == 1  # unpinned: rotated
        assert run.stop()
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_two_resumes_at_once_start_one_worker_and_the_other_exits_2(tmp_path, tiny_model_dir, tunedeck_cmd):
    run = make_run(tmp_path, tiny_model_dir, "twice", "train.max_steps=5000", "train.save_strategy=steps",
                   "train.save_steps=2", "train.load_best_at_end=false")
    first = start_worker(run)
    wait_for(lambda: (run.checkpoints / "checkpoint-2" / MANIFEST).exists() or first.poll() is not None)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert run.effective_status() == "failed"

    command = [*tunedeck_cmd, "resume", run.run_id, "--headless", "--runs-dir", str(run.root.parent)]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        wait_for(lambda: any(p.poll() is not None for p in both))
        loser = next(p for p in both if p.poll() is not None)
        winner = next(p for p in both if p is not loser)
        out, err = loser.communicate(timeout=60)
        assert loser.returncode == 2, out + err
        pid = run.holder()
        assert pid and f"already running (pid {pid})" in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
        seen = len(steps_of(run))
        wait_for(lambda: len(steps_of(run)) > seen + 1 or winner.poll() is not None)
        assert winner.poll() is None
        assert run.stop()  # reaches the one worker there is
        out, err = winner.communicate(timeout=300)
        assert winner.returncode == 1 and "stopped: " in out, out[-2000:] + err[-2000:]  # a stopped run exits 1
        assert f"resumed (pid {pid})" in out
    finally:
        for proc in both:
            if proc.poll() is None:
                proc.kill()
        if run.holder():
            os.killpg(run.holder(), signal.SIGKILL)
    events = list(read_events(run.events_path))
    assert [e.resumed_from_step for e in events if isinstance(e, RunStarted)] == [0, 2]  # one resumed worker
    assert [e.status for e in events if isinstance(e, RunFinished)] == ["stopped"]
    resumed = max(i for i, e in enumerate(events) if isinstance(e, RunStarted))
    steps = [e.step for e in events[resumed:] if isinstance(e, Step)]
    assert steps == list(range(3, 3 + len(steps)))  # one worker: every step once, from the checkpoint on
