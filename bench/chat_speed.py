"""Chat speed of a run's model through each chat backend: HF base + LoRA adapter, merged HF, and GGUF (llama.cpp).

Usage: python bench/chat_speed.py RUN [--runs-dir DIR] [--max-new-tokens 64] [--rounds 3] [--quant Q4_K_M]

All backends load once, answer a warm-up prompt, then take turns (order rotating each round) answering the same
prompts greedily, so a busy shared machine slows them alike. Prints per backend the median over rounds of
tokens/s over whole requests (prompt processing included) and of decode tokens/s (after the first token), the
per-round values, and the ratio of the medians to the HF + adapter baseline; then all of it as one JSON line.
Set TUNEDECK_CHAT_THREADS to fix the CPU threads of both libraries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
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
BACKENDS = (("hf+adapter", "adapter"), ("hf merged", "merged"), ("gguf", "gguf"))


def one_round(backend, max_new_tokens: int) -> tuple[float, float | None]:
    """(tokens/s over whole requests, decode tokens/s) for the prompt set."""
    settings, cancel = Settings(max_new_tokens=max_new_tokens), threading.Event()
    tokens, seconds, decode_tokens, decode_seconds = 0, 0.0, 0, 0.0
    for index, prompt in enumerate(PROMPTS):
        answer = backend.generate(GenerateRequest(str(index), [{"role": "user", "content": prompt}], settings),
                                  lambda _: None, cancel)
        tokens += answer.tokens
        seconds += answer.seconds
        if answer.first_token_s is not None and answer.tokens > 1:
            decode_tokens += answer.tokens - 1
            decode_seconds += answer.seconds - answer.first_token_s
    return tokens / seconds, (decode_tokens / decode_seconds if decode_seconds else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quant", help="which GGUF export (default: the first configured quant)")
    args = parser.parse_args()
    loaded = {}
    for name, backend in BACKENDS:
        try:
            loaded[name] = load_backend(resolve_chat_model(args.run, args.runs_dir, backend=backend,
                                                           quant=args.quant))
        except TunedeckError as exc:
            print(f"{name:11} skipped: {exc.one_line()}")
            continue
        warm = GenerateRequest("warm", [{"role": "user", "content": "Hi"}], Settings(max_new_tokens=8))
        loaded[name].generate(warm, lambda _: None, threading.Event())
    rounds: dict[str, list[tuple[float, float | None]]] = {name: [] for name in loaded}
    names = list(loaded)
    for index in range(args.rounds):
        for name in names[index % len(names):] + names[: index % len(names)]:
            rounds[name].append(one_round(loaded[name], args.max_new_tokens))
    results = {}
    for name, values in rounds.items():
        decode = [d for _, d in values if d is not None]
        results[name] = {"model": loaded[name].model.label,
                         "tokens_per_s": round(statistics.median(v for v, _ in values), 1),
                         "decode_tokens_per_s": round(statistics.median(decode), 1) if decode else None,
                         "rounds": [round(v, 1) for v, _ in values]}
    base = results.get("hf+adapter", {}).get("tokens_per_s")
    for name, row in results.items():
        row["ratio"] = round(row["tokens_per_s"] / base, 2) if base else None
        print(f"{name:11} {row['model']:40} {row['tokens_per_s']:6.1f} tok/s (rounds {row['rounds']})  "
              f"decode {row['decode_tokens_per_s']} tok/s  x{row['ratio']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
