"""A run for chat tests: the tiny model with a random, non-zero LoRA adapter, so base and tuned answers differ."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import save_nonzero_adapter


def make_chat_run(tiny_model_dir: Path, root: Path) -> Path:
    """runs/<id>/ with config.yaml (base: the tiny model), adapter/ (LoRA, lora_B non-zero) and a completed status."""
    from tunedeck.core.config_files import load_config
    from tunedeck.core.jobs.runs import create_run

    rows = [{"instruction": "Who are you?", "input": "", "output": "I am a test."}] * 4
    (root / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
    config = load_config(overrides=[f"model.name_or_path={tiny_model_dir}", f"data.path={root / 'rows.json'}"])
    run = create_run(root / "runs", config, "chat")
    save_nonzero_adapter(run, tiny_model_dir, lora_alpha=16)
    return run.path


class WorkerProcess:
    """A real `python -m tunedeck.core.worker chat ...` subprocess, driven line by line."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "tunedeck.core.worker", "chat", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)

    def send(self, **request: Any) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def next(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the worker ended: {self.proc.stderr.read()[-3000:]}")
        return json.loads(line)

    def answer(self, **request: Any) -> tuple[list[str], dict[str, Any]]:
        """Send a generate request; the streamed token texts and the done (or error) reply."""
        self.send(op="generate", **request)
        tokens = []
        while True:
            message = self.next()
            if message["type"] == "token":
                tokens.append(message["text"])
            elif message["type"] in ("done", "error"):
                return tokens, message

    def close(self) -> int:
        if self.proc.poll() is None:
            self.send(op="quit")
        code = self.proc.wait(timeout=60)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code
