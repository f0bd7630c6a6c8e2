"""The chat worker: load a model once, then answer JSON-line requests from stdin, streaming tokens to stdout."""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any

from tunedeck.core.chat.backends import Backend, load_backend
from tunedeck.core.chat.protocol import (
    Bye,
    ChatReply,
    Done,
    ErrorReply,
    Pong,
    Ready,
    Token,
    check_json,
    generate_request,
    parse_request,
)
from tunedeck.core.chat.resolve import BACKENDS, ChatModel, resolve_chat_model
from tunedeck.core.errors import TunedeckError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tunedeck.core.worker chat",
                                     description="Hold one model and answer JSON-line requests on stdin.")
    add_model_arguments(parser)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL_OR_RUN and how to read it; shared with `tunedeck chat`."""
    parser.add_argument("model", metavar="MODEL_OR_RUN",
                        help="a run id or folder, an adapter folder, a Hugging Face model folder, or a .gguf file")
    parser.add_argument("--checkpoint", help="for a run: last (default), best, or a checkpoint's step number")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="for a run: adapter on the base (default), its merged export, or its GGUF export")
    parser.add_argument("--quant", help="for a run's GGUF export: which quantization (e.g. Q4_K_M)")


def resolve_from_args(args: argparse.Namespace) -> ChatModel:
    runs_root = getattr(args, "runs_dir", None) or Path("runs")
    return resolve_chat_model(args.model, runs_root, args.checkpoint, args.backend, args.quant)


class ChatWorker:
    """Answers one request at a time; a reader thread lets `cancel` stop the answer being generated."""

    def __init__(self, out: IO[str]):
        self.out = out
        self.backend: Backend | None = None
        self.cancel = threading.Event()
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def send(self, reply: ChatReply) -> None:
        self.out.write(reply.line() + "\n")
        self.out.flush()

    def read(self, stdin: IO[str]) -> None:
        for line in stdin:
            if not line.strip():
                continue
            try:
                request = parse_request(line)
            except ValueError as exc:
                self.send(ErrorReply(id=None, message=str(exc)))
                continue
            if request["op"] == "cancel":
                self.cancel.set()
            else:
                self.requests.put(request)
        self.requests.put(None)

    def load(self, model: ChatModel) -> None:
        self.backend = None  # drop the old model before loading the next
        self.backend = load_backend(model)
        self.send(Ready(model))

    def serve(self) -> int:
        while True:
            request = self.requests.get()
            if request is None or request["op"] == "quit":
                self.send(Bye())
                return 0
            try:
                self.handle(request)
            except (TunedeckError, ValueError) as exc:
                message = exc.one_line() if isinstance(exc, TunedeckError) else str(exc)
                self.send(ErrorReply(id=request.get("id"), message=message))
            except Exception as exc:  # noqa: BLE001 - one failed answer must not end the conversation
                traceback.print_exc(file=sys.stderr)
                self.send(ErrorReply(id=request.get("id"), message=f"{type(exc).__name__}: {exc}"))

    def handle(self, request: dict[str, Any]) -> None:
        if request["op"] == "ping":
            self.send(Pong(id=request.get("id")))
        elif request["op"] == "load":
            runs_root = Path(request["runs_dir"]) if request.get("runs_dir") else None
            self.load(resolve_chat_model(str(request.get("model", "")), runs_root, request.get("checkpoint"),
                                         request.get("backend"), request.get("quant")))
        elif request["op"] == "generate":
            self.generate(request)

    def generate(self, raw: dict[str, Any]) -> None:
        if self.backend is None:
            raise ValueError("no model loaded")
        request = generate_request(raw)
        self.cancel.clear()
        answer = self.backend.generate(request, lambda text: self.send(Token(id=request.id, text=text)),
                                       self.cancel)
        valid, error = check_json(answer.text)
        if not request.settings.json_mode and not answer.text.lstrip().startswith(("{", "[")):
            valid, error = None, None  # not meant as JSON: no badge
        self.send(Done(id=request.id, text=answer.text, tokens=answer.tokens, seconds=round(answer.seconds, 3),
                       first_token_s=answer.first_token_s, tokens_per_s=answer.tokens_per_s, finish=answer.finish,
                       json_valid=valid, json_error=error, adapter=request.adapter, model=self.backend.model.label,
                       constrained=request.settings.json_mode and self.backend.model.backend == "gguf"))


def serve(argv: list[str], out: IO[str], stdin: IO[str] | None = None) -> int:
    """The `chat` worker mode: resolve and load the model, say ready, then answer until quit or end of input."""
    parser = build_parser()
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="runs root for run ids")
    args = parser.parse_args(argv)
    worker = ChatWorker(out)
    try:
        worker.load(resolve_from_args(args))
    except TunedeckError as exc:
        worker.send(ErrorReply(id=None, message=exc.one_line(), fatal=True))
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the client shows it instead of waiting forever
        traceback.print_exc(file=sys.stderr)
        worker.send(ErrorReply(id=None, message=f"cannot load the model: {type(exc).__name__}: {exc}", fatal=True))
        return 1
    threading.Thread(target=worker.read, args=(stdin or sys.stdin,), daemon=True).start()
    return worker.serve()
