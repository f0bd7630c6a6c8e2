"""Chat speed of a run's model through each chat backend: HF base + LoRA adapter, merged HF, and GGUF (llama.cpp).

Usage: python bench/chat_speed.py RUN [--runs-dir DIR] [--max-new-tokens 128] [--quant Q4_K_M]

Each backend loads once, answers one warm-up prompt, then the same prompts greedily. Prints one line per backend:
tokens, seconds, tokens/s over the whole request (prompt included), decode tokens/s (after the first token),
and the ratio of tokens/s to the HF + adapter baseline; then the same as one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import threading
import time
from pathlib import Path

from tunedeck.core.chat.backends import load_backend
from tunedeck.core.chat.protocol import GenerateRequest, Settings
from tunedeck.core.chat.resolve import resolve_chat_model
from tunedeck.core.errors import TunedeckError

PROMPTS = [
    "Who are you?",
    "Write a short story about a robot who learns to paint.",
    "Explain how a rainbow forms, step by step.",
    "List ten fruits and one fact about each.",
]


def measure(backend, max_new_tokens: int) -> dict:
    settings = Settings(max_new_tokens=max_new_tokens)
    cancel = threading.Event()
    warm = GenerateRequest("warm", [{"role": "user", "content": "Hi"}], Settings(max_new_tokens=8))
    backend.generate(warm, lambda _: None, cancel)
    tokens, seconds, decode_tokens, decode_seconds = 0, 0.0, 0, 0.0
    for index, prompt in enumerate(PROMPTS):
        request = GenerateRequest(str(index), [{"role": "user", "content": prompt}], settings)
        answer = backend.generate(request, lambda _: None, cancel)
        tokens += answer.tokens
        seconds += answer.seconds
        if answer.first_token_s is not None and answer.tokens > 1:
            decode_tokens += answer.tokens - 1
            decode_seconds += answer.seconds - answer.first_token_s
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "decode_tokens_per_s": round(decode_tokens / decode_seconds, 1) if decode_seconds else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--quant", help="which GGUF export (default: the first configured quant)")
    args = parser.parse_args()
    results = {}
    for name, backend in (("hf+adapter", "adapter"), ("hf merged", "merged"), ("gguf", "gguf")):
        try:
            model = resolve_chat_model(args.run, args.runs_dir, backend=backend, quant=args.quant)
        except TunedeckError as exc:
            print(f"{name:11} skipped: {exc.one_line()}")
            continue
        started = time.perf_counter()
        loaded = load_backend(model)
        load_s = time.perf_counter() - started
        results[name] = {"model": model.label, "load_s": round(load_s, 1), **measure(loaded, args.max_new_tokens)}
        del loaded
        gc.collect()
    base = results.get("hf+adapter", {}).get("tokens_per_s")
    for name, row in results.items():
        row["ratio"] = round(row["tokens_per_s"] / base, 2) if base else None
        print(f"{name:11} {row['model']:40} load {row['load_s']:5.1f}s  {row['tokens']:4} tokens in "
              f"{row['seconds']:6.1f}s  {row['tokens_per_s']:6.1f} tok/s  decode {row['decode_tokens_per_s']} tok/s"
              f"  x{row['ratio']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
