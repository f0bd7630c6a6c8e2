"""The app's end of a chat worker: spawn it, write JSON-line requests, hand every typed reply to a callback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tunedeck.core.chat.protocol import ChatReply, ErrorReply, WorkerExit, parse_chat_reply
from tunedeck.core.jobs.process import worker_argv

Reply = Callable[[ChatReply], None]


@dataclass(frozen=True)
class ChatTarget:
    """What one worker holds: a run folder, an HF folder or a .gguf file, and how to read it."""

    model: str
    checkpoint: str | None = None
    backend: str | None = None  # for a run: adapter | merged | gguf
    quant: str | None = None

    def argv(self) -> list[str]:
        args = [self.model]
        for flag, value in (("--checkpoint", self.checkpoint), ("--backend", self.backend), ("--quant", self.quant)):
            if value:
                args += [flag, value]
        return args


class ChatClient(Protocol):
    def send(self, request: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


ClientFactory = Callable[[ChatTarget, Reply], ChatClient]


class WorkerChatClient:
    """A `python -m tunedeck.core.worker chat ...` subprocess; replies arrive on a reader thread."""

    def __init__(self, target: ChatTarget, on_reply: Reply, python: str = sys.executable):
        self.on_reply = on_reply
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.lock = threading.Lock()
        self.closing = False
        self.proc = subprocess.Popen(
            worker_argv("chat", *target.argv(), python=python), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._read_stderr, daemon=True).start()
        threading.Thread(target=self._read_replies, daemon=True).start()

    def send(self, request: dict[str, Any]) -> None:
        try:
            with self.lock:
                self.proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
                self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.on_reply(ErrorReply(id=request.get("id"), message="the chat worker has ended"))

    def close(self) -> None:
        """Ask the worker to quit; kill it if it does not within a few seconds."""
        self.closing = True
        if self.proc.poll() is None:
            self.send({"op": "cancel"})
            self.send({"op": "quit"})
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _read_replies(self) -> None:
        for line in self.proc.stdout:
            try:
                data = json.loads(line)
                reply = parse_chat_reply(data) if isinstance(data, dict) else None
            except ValueError:  # not JSON, or a malformed reply: kept with the worker's last words
                self.stderr_tail.append(line.rstrip())
                continue
            if reply is not None:
                self.on_reply(reply)
        code = self.proc.wait()
        if not self.closing:
            last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
            self.on_reply(WorkerExit(code=code, message=last[-300:]))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip())


def spawn_worker(target: ChatTarget, on_reply: Reply) -> ChatClient:
    """The default client factory: a real worker subprocess with this interpreter."""
    return WorkerChatClient(target, on_reply)
