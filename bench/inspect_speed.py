"""Dataset inspection speed: tunedeck's full lint against a plain per-row apply_chat_template + tokenize loop.

Generates `--rows` unique Alpaca rows (English words drawn from the Python docs' vocabulary, Chinese
characters drawn with the frequencies of a real Chinese Alpaca set when ../shared/datasets has one),
then times, on the same file and the same tokenizer (the builtin SmolLM2, its own chat template), each
run in a fresh process with the tokenizer already loaded, alternating (--repeat N: best of N each):
  baseline  json.load + for each row: apply_chat_template(tokenize=False) + tokenizer(text)
  tunedeck  inspect_dataset(): load, every lint, exact lengths and trained-token counts
and checks that every run gives identical per-sample lengths. The lint forks one process per CPU for
large files, so its wall-clock gain depends on how busy the machine's other cores are: the CPU time of
both (all processes counted) is printed too.

    python bench/inspect_speed.py                    # 100000 rows, English
    python bench/inspect_speed.py --lang zh --rows 20000
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import pydoc
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED_ZH = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "alpaca_zh_demo.json"
DOC_MODULES = ("os", "re", "json", "collections", "argparse", "pathlib", "subprocess", "typing", "dataclasses",
               "asyncio", "logging", "unittest", "csv", "datetime", "functools", "itertools", "textwrap", "random")


def english_vocabulary() -> tuple[list[str], list[int]]:
    counts: collections.Counter[str] = collections.Counter()
    for name in DOC_MODULES:
        counts.update(re.findall(r"[A-Za-z]+", pydoc.render_doc(importlib.import_module(name),
                                                               renderer=pydoc.plaintext)))
    words, weights = zip(*counts.most_common(), strict=True)
    return list(words), list(weights)


def chinese_vocabulary() -> tuple[list[str], list[int]]:
    if SHARED_ZH.is_file():
        rows = json.loads(SHARED_ZH.read_text(encoding="utf-8"))
        text = "".join(r["instruction"] + r["output"] for r in rows)
        counts = collections.Counter(c for c in text if "\u4e00" <= c <= "\u9fff")
        chars, weights = zip(*counts.most_common(), strict=True)
        return list(chars), list(weights)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    return chars, [int(1e6 / (rank + 1)) for rank in range(len(chars))]


def make_rows(count: int, lang: str, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    english, chinese = english_vocabulary(), chinese_vocabulary()

    def sentence(zh: bool) -> str:
        words, weights = chinese if zh else english
        if zh:
            return "".join(rng.choices(words, weights, k=rng.randint(8, 30))) + "。"
        return " ".join(rng.choices(words, weights, k=rng.randint(5, 20))).capitalize() + "."

    def text(zh: bool, sentences: int) -> str:
        return ("" if zh else " ").join(sentence(zh) for _ in range(sentences))

    rows = []
    for _ in range(count):
        zh = lang == "zh" or (lang == "mixed" and rng.random() < 0.5)
        rows.append({"instruction": text(zh, 1), "input": text(zh, rng.randint(1, 2)) if rng.random() < 0.4 else "",
                     "output": text(zh, rng.randint(2, 8))})
    return rows


def baseline(path: Path, tokenizer) -> list[int]:
    lengths = []
    for row in json.loads(path.read_text(encoding="utf-8")):
        user = f"{row['instruction']}\n{row['input']}" if row["input"] else row["instruction"]
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return lengths


def measure(which: str, path: Path, out: Path) -> None:
    """One timed run in this (fresh) process: the tokenizer is loaded first and not timed."""
    from tunedeck.core.inspect.inspect import inspect_dataset, load_inspect_tokenizer

    tokenizer = load_inspect_tokenizer()
    cpu = cpu_seconds()
    start = time.perf_counter()
    if which == "baseline":
        lengths, counts = baseline(path, tokenizer), {}
    else:
        report = inspect_dataset(path, tokenizer=tokenizer)
        lengths, counts = report.lengths.lengths, report.counts()
    seconds = time.perf_counter() - start
    out.write_text(json.dumps({"seconds": seconds, "cpu": cpu_seconds() - cpu, "lengths": lengths,
                               "counts": counts}), encoding="utf-8")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the lint's worker processes)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(which: str, path: Path) -> dict:
    out = path.with_name(f"{which}.json")
    subprocess.run([sys.executable, __file__, "--measure", which, str(path)], check=True)
    return json.loads(out.read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--lang", choices=("en", "zh", "mixed"), default="en")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each; the best is reported")
    parser.add_argument("--measure", nargs=2, metavar=("WHICH", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.measure:
        path = Path(args.measure[1])
        measure(args.measure[0], path, path.with_name(f"{args.measure[0]}.json"))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alpaca.json"
        path.write_text(json.dumps(make_rows(args.rows, args.lang, args.seed), ensure_ascii=False), encoding="utf-8")
        print(f"{args.rows} {args.lang} Alpaca rows, {path.stat().st_size / 1e6:.1f} MB; cpus: {os.cpu_count()}; "
              "each run in a fresh process, alternating", flush=True)
        runs: dict[str, list[dict]] = {"tunedeck": [], "baseline": []}
        for _ in range(args.repeat):
            for which in runs:
                runs[which].append(timed(which, path))
                last = runs[which][-1]
                print(f"  {which:9} {last['seconds']:.1f} s wall, {last['cpu']:.1f} s CPU "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    ours = min(runs["tunedeck"], key=lambda r: r["seconds"])
    theirs = min(runs["baseline"], key=lambda r: r["seconds"])
    identical = all(r["lengths"] == theirs["lengths"] for r in runs["tunedeck"] + runs["baseline"])
    plain = theirs["lengths"]
    print(f"baseline  apply_chat_template + tokenize loop: {args.rows / theirs['seconds']:10.0f} rows/s")
    print(f"tunedeck  full lint (inspect_dataset):          {args.rows / ours['seconds']:10.0f} rows/s")
    print(f"ratio     tunedeck / baseline:                  {theirs['seconds'] / ours['seconds']:10.2f}x")
    print(f"CPU time  per 1000 rows: baseline {1000 * theirs['cpu'] / args.rows:.2f} s, tunedeck "
          f"{1000 * ours['cpu'] / args.rows:.2f} s (all processes); ratio {theirs['cpu'] / ours['cpu']:.2f}x")
    print(f"lengths   identical for all {len(plain)} samples: {identical}; mean {sum(plain) / len(plain):.1f} tokens; "
          f"findings {ours['counts']}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
