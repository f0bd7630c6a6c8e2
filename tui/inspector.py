"""The inspection worker seen from the app: its command line, and a process whose JSON lines arrive typed."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tunedeck.core.inspect.messages import InspectMessage, parse_inspect_reply
from tunedeck.core.jobs.process import worker_argv


@dataclass(frozen=True)
class InspectRequest:
    """What to inspect and how the run will see it (model tokenizer, template, cutoff, corpus settings)."""

    path: str
    format: str | None = None
    dataset_info: str | None = None
    name: str | None = None
    model: str = "builtin:smollm2-135m-instruct"
    template: str = "auto"
    cutoff: int = 2048
    corpus_mode: str = "pretrain"
    chunk_tokens: tuple[int, int] = (300, 800)
    system_prompt: str | None = None
    placeholders: tuple[tuple[str, str], ...] = ()  # data.placeholders as (name, value) pairs


def worker_command(request: InspectRequest) -> list[str]:
    """`python -m tunedeck.core.worker inspect ...` for a request (an argument list, never a shell line)."""
    command = worker_argv("inspect", request.path, "--model", request.model, "--template", request.template,
                          "--cutoff", request.cutoff, "--corpus-mode", request.corpus_mode,
                          "--chunk-tokens", *request.chunk_tokens)
    if request.format and request.format != "auto":
        command += ["--format", request.format]
    if request.dataset_info:
        command += ["--dataset-info", request.dataset_info, "--name", request.name or ""]
    if request.system_prompt:  # one argument each, so a value starting with '-' stays a value
        command.append(f"--system={request.system_prompt}")
    command += [f"--fill={name}={value}" for name, value in request.placeholders]
    return command


CommandFactory = Callable[[InspectRequest], list[str]]


class InspectorProcess:
    """One inspection worker: read its messages, ask it for rows, stop it. Its stderr is kept for the last words."""

    def __init__(self, command: list[str]):
        self.command = command
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._stderr, text=True, encoding="utf-8", bufsize=1)

    def messages(self) -> Iterator[InspectMessage]:
        """Each message the worker prints, typed, until it exits; lines that are not messages are skipped."""
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                data = json.loads(line)
                message = parse_inspect_reply(data) if isinstance(data, dict) else None
            except ValueError:
                continue
            if message is not None:
                yield message
        self._process.wait()

    def request_row(self, row: int) -> bool:
        """Ask for a row's preview; False if the worker is gone."""
        stdin = self._process.stdin
        if stdin is None or self._process.poll() is not None:
            return False
        try:
            stdin.write(json.dumps({"row": row}) + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return False
        return True

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def last_words(self, lines: int = 3) -> str:
        """The end of what the worker wrote to stderr, for a notification."""
        self._stderr.flush()
        self._stderr.seek(0)
        tail = [line.strip() for line in self._stderr.read().splitlines() if line.strip()]
        return " | ".join(tail[-lines:])

    def stop(self) -> None:
        if self._process.poll() is None:
            try:
                if self._process.stdin:
                    self._process.stdin.close()
            except OSError:
                pass
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stderr.close()
