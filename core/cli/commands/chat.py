"""`tunedeck chat MODEL_OR_RUN --prompt TEXT`: one answer, streamed to stdout, from a run, an HF folder or a GGUF."""

from __future__ import annotations

import argparse
import sys
import threading

from tunedeck.core.cli.commands import add_runs_dir


def register(commands: argparse._SubParsersAction) -> None:
    from tunedeck.core.chat.worker_loop import add_model_arguments

    chat = commands.add_parser(
        "chat", help="ask a model one question and print its answer",
        description="Load a run's model (base + adapter, its merged export or a GGUF export), an HF model folder "
                    "or a .gguf file, answer one prompt, print the answer and exit. Speed and the JSON check "
                    "go to stderr. The app's chat pane (key c on the runs screen) holds a conversation.")
    add_model_arguments(chat)
    chat.add_argument("--prompt", required=True, help="the user's message ('-' reads it from stdin)")
    chat.add_argument("--base", action="store_true",
                      help="answer as the base model: the run's adapter switched off (GGUF: the builtin base GGUF)")
    chat.add_argument("--json", action="store_true",
                      help="JSON mode: constrained to JSON on GGUF, checked on HF; exit code 1 when the answer "
                           "is not valid JSON")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 (default) answers greedily")
    chat.add_argument("--top-p", type=float, default=1.0)
    chat.add_argument("--top-k", type=int, default=0, help="0: no top-k cut")
    chat.add_argument("--repetition-penalty", type=float, default=1.0, help="above 1 discourages repeating")
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument("--stop", action="append", default=[], metavar="TEXT",
                      help="stop the answer before this text (repeatable)")
    add_runs_dir(chat)
    chat.set_defaults(func=chat_command)


def chat_command(args: argparse.Namespace, open_app=None) -> int:
    from tunedeck.core.chat.backends import load_backend
    from tunedeck.core.chat.protocol import GenerateRequest, Settings, check_json
    from tunedeck.core.chat.worker_loop import resolve_from_args
    from tunedeck.core.errors import ConfigError

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    try:
        settings = Settings.from_dict({
            "system": args.system, "temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
            "repetition_penalty": args.repetition_penalty, "max_new_tokens": args.max_new_tokens,
            "stop": args.stop, "json_mode": args.json})
    except ValueError as exc:
        raise ConfigError(str(exc), where="tunedeck chat") from None
    model = resolve_from_args(args)
    if args.base and not model.has_base:
        raise ConfigError("--base needs a model that knows its base", where=model.label,
                          hint="chat with a run or an adapter folder; for a GGUF, give the base model's .gguf")
    _quiet()
    backend = load_backend(model)
    request = GenerateRequest("1", [{"role": "user", "content": prompt}], settings, adapter=not args.base)
    answer = backend.generate(request, _print, threading.Event())
    print(flush=True)
    valid, error = check_json(answer.text)
    speed = f"{answer.tokens_per_s} tokens/s" if answer.tokens_per_s else "no tokens"
    json_note = ("JSON valid" if valid else f"JSON invalid: {error}") if args.json else ""
    side = "base" if args.base else "fine-tuned" if model.has_base else ""
    details = [model.label + (f" ({side})" if side else ""), model.backend, f"{answer.tokens} tokens", speed,
               f"ended: {answer.finish}", json_note]
    print("[" + ", ".join(d for d in details if d) + "]", file=sys.stderr)
    return 1 if args.json and not valid else 0


def _print(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _quiet() -> None:
    """Library chatter (progress bars, deprecation notes) stays out of the answer and the terminal."""
    import logging
    import os
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
