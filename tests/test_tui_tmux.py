"""In a real terminal (tmux): start a short demo run from the app, kill the app, start it again, attach.

The run must keep training while no app is open, be listed as running, show its whole curve again, and
stop gracefully from the re-attached view.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunedeck.core.jobs.folder import pid_alive
from tunedeck.core.jobs.runs import RunDir
from tunedeck.core.stream.events import RunStarted, Step, read_events

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

STEPS = 5000  # far more than the test waits for: it stops the run itself
PRESET = """# tmux-demo: the demo data on a tiny model, for the terminal test.
model:
  name_or_path: {model}
data:
  path: builtin:demo_identity.json
  cutoff_len: 128
lora:
  r: 8
  alpha: 16
train:
  max_steps: {steps}
  batch_size: 2
  gradient_accumulation_steps: 1
  learning_rate: 1.0e-3
  precision: fp32
  gradient_checkpointing: false
  eval_strategy: "no"
  save_strategy: "no"
  sample_prompts: []
"""


class Terminal:
    """One tmux server of our own; each app runs in its own session on it."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path):
        self.socket = name
        self.env = env
        self.cwd = cwd
        self.conf = cwd / "tmux.conf"
        self.conf.write_text("set -g default-size 200x50\n")

    def tmux(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        result = subprocess.run(["tmux", "-L", self.socket, "-f", str(self.conf), *args], capture_output=True,
                                text=True, timeout=30, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start_app(self, session: str, *args: str) -> int:
        env_args = [arg for key, value in self.env.items() for arg in ("-e", f"{key}={value}")]
        self.tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", str(self.cwd), *env_args,
                  sys.executable, "-m", "tunedeck.core.cli", *args)
        return int(self.tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())

    def keys(self, session: str, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", session, key)
            time.sleep(0.3)

    def screen(self, session: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", session)

    def wait_for(self, session: str, text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            shown = self.screen(session)
            if text in shown:
                return shown
            time.sleep(0.5)
        raise AssertionError(f"{text!r} never appeared; the screen shows:\n{self.screen(session)}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)
        folder = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (folder / self.socket).unlink(missing_ok=True)


def steps_of(run: RunDir) -> list[int]:
    return [e.step for e in read_events(run.events_path) if isinstance(e, Step)]


def test_a_run_started_in_the_app_survives_the_app_and_reattaches(tmp_path: Path, tiny_model_dir):
    config_home = tmp_path / "config"
    (config_home / "tunedeck" / "presets").mkdir(parents=True)
    (config_home / "tunedeck" / "presets" / "tmux-demo.yaml").write_text(PRESET.format(model=tiny_model_dir,
                                                                                       steps=STEPS))
    runs = tmp_path / "runs"
    env = {"XDG_CONFIG_HOME": str(config_home), "TUNEDECK_CACHE": os.environ["TUNEDECK_CACHE"],
           "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    term = Terminal(f"tunedeck-test-{os.getpid()}", env, tmp_path)
    try:
        app_pid = term.start_app("first", "--runs-dir", str(runs), "--preset", "tmux-demo")
        term.wait_for("first", "New run", 60)
        term.keys("first", "n")
        term.wait_for("first", "1 · Dataset", 30)
        term.keys("first", "Enter")  # empty dataset: the preset's own; focus moves to the presets (tmux-demo)
        term.keys("first", "Enter")
        term.wait_for("first", "Hyperparameters · preset tmux-demo", 30)
        term.keys("first", "C-r")
        term.wait_for("first", "The resolved config (preset tmux-demo", 30)
        term.keys("first", "l")
        shown = term.wait_for("first", " steps (1-", 120)  # the live view draws the first steps
        assert "● running" in shown

        [run] = [RunDir(p) for p in runs.iterdir()]
        worker_pid = run.read_status()["pid"]
        os.kill(app_pid, signal.SIGKILL)  # the app dies (as with a dropped SSH connection) ...
        term.close()
        seen_at_kill = max(steps_of(run))
        assert seen_at_kill < STEPS, "the run ended before the app was killed; the test proves nothing"
        deadline = time.monotonic() + 120
        while max(steps_of(run)) < seen_at_kill + 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert max(steps_of(run)) >= seen_at_kill + 2  # ... and the run kept training without it
        assert pid_alive(worker_pid) or run.read_status()["status"] == "completed"

        term.start_app("second", "--runs-dir", str(runs))
        listed = term.wait_for("second", run.run_id, 60)
        row = next(line for line in listed.splitlines() if run.run_id in line)
        assert "running" in row or "completed" in row
        term.keys("second", "Enter")
        needed = seen_at_kill + 2
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the replayed curve starts at step 1 and reaches past the kill
            shown = term.screen("second")
            drawn = re.search(r"loss · (\d+) steps \(1-(\d+)\)", shown)
            if drawn and int(drawn.group(1)) == int(drawn.group(2)) >= needed:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the curve never covered steps 1-{needed}:\n{term.screen('second')}")
        assert "● running" in shown

        term.keys("second", "s", "y")  # stop it from the re-attached view, gracefully
        shown = term.wait_for("second", "stopped at step", 180)
        final = max(steps_of(run))
        assert steps_of(run) == list(range(1, final + 1))  # every step, once: the same run continued
        events = list(read_events(run.events_path))
        assert sum(isinstance(e, RunStarted) for e in events) == 1
        assert run.read_status()["pid"] == worker_pid
        assert json.loads(run.status_path.read_text())["status"] == "stopped"
    finally:
        term.close()
        for leftover in runs.iterdir() if runs.is_dir() else ():
            RunDir(leftover).stop(now=True)
