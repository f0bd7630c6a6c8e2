"""Training throughput: tunedeck's worker against a plain TRL script, same model, data and settings.

Runs the baseline (bench/baseline_sft.py) and tunedeck's worker in turn, `--rounds` times each, on a
mixed-length dataset, and prints real (non-padding) tokens per second, peak memory, the validation
loss of each trained adapter (scored the same way for both), and the ratio tunedeck / baseline.

    python bench/train_throughput.py                 # CPU, the demo model (SmolLM2-135M)
    python bench/train_throughput.py --gpu --arch qwen2.5-0.5b   # CUDA, random weights, real architecture
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
WORDS = ("model data train token batch loss curve adapter rank alpha epoch step memory kernel layer "
         "gradient optimizer schedule warmup cutoff template answer question score json").split()
# Real architectures for --gpu (random weights); vocabulary cut to the SmolLM2 tokenizer's.
ARCHS = {
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2),
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2),
}
MODES = ("padded", "by_length", "padding_free")
H100_BF16_FLOPS = 989e12


def make_data(folder: Path, rows: int, seed: int) -> tuple[Path, Path]:
    """Mixed lengths: answers from 4 to 300 words, as in real SFT sets where a few long rows dominate."""
    rng = random.Random(seed)

    def row(i: int) -> dict:
        words = int(rng.paretovariate(1.2) * 4) if rng.random() < 0.8 else rng.randint(120, 300)
        answer = " ".join(rng.choice(WORDS) for _ in range(min(words, 300)))
        return {"instruction": f"Question {i}: explain the {rng.choice(WORDS)} in your own words.", "output": answer}

    train, val = folder / "train.json", folder / "val.json"
    train.write_text(json.dumps([row(i) for i in range(rows)]), encoding="utf-8")
    val.write_text(json.dumps([row(rows + i) for i in range(32)]), encoding="utf-8")
    return train, val


def build_model(args: argparse.Namespace, folder: Path) -> Path:
    from tunedeck.core.models.loading import BUILTIN_MODELS, materialize_builtin

    builtin = materialize_builtin(BUILTIN_MODELS["smollm2-135m-instruct"])
    if not args.gpu:
        return builtin
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec = dict(ARCHS[args.arch])
    config = AutoConfig.for_model(spec.pop("model_type"), vocab_size=49152, tie_word_embeddings=True, **spec)
    target = folder / args.arch
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    args.params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(builtin).save_pretrained(target)
    return target


def run_baseline(args, model: Path, train: Path, out: Path) -> dict:
    command = [sys.executable, str(HERE / "baseline_sft.py"), "--model", str(model), "--data", str(train),
               "--out", str(out), "--steps", str(args.steps), "--batch", str(args.batch),
               "--cutoff", str(args.cutoff), "--rank", str(args.rank)] + (["--bf16"] if args.gpu else [])
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["adapter"] = str(out)
    return report


def run_tunedeck(args, model: Path, train: Path, val: Path, folder: Path, mode: str) -> dict:
    from tunedeck.core.stream.events import RunFinished, read_events

    config = {
        "model": {"name_or_path": str(model)},
        "data": {"path": str(train), "val_path": str(val), "cutoff_len": args.cutoff},
        "lora": {"r": args.rank, "alpha": 2 * args.rank, "dropout": 0.0, "target_modules": "all-linear"},
        "train": {"max_steps": args.steps, "batch_size": args.batch, "gradient_accumulation_steps": 1,
                  "learning_rate": 2e-4, "lr_scheduler": "constant", "warmup_ratio": 0.0, "batching": mode,
                  "precision": "bf16" if args.gpu else "fp32", "gradient_checkpointing": False,
                  "eval_strategy": "no", "save_strategy": "no", "load_best_at_end": False, "seed": 42,
                  "cache_tokenized": False},
    }
    path = folder / f"tunedeck-{mode}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    runs = folder / "runs"
    subprocess.run([sys.executable, "-m", "tunedeck.core.cli", "train", str(path), "--runs-dir", str(runs)],
                   capture_output=True, text=True, check=True)
    run = max(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    finished = [e for e in read_events(run / "events.jsonl") if isinstance(e, RunFinished)][-1]
    return {"train_seconds": finished.train_seconds, "train_tokens": finished.train_tokens,
            "peak_memory": finished.peak_memory, "adapter": finished.adapter}


def val_loss(model: Path, adapter: str, val: Path, cutoff: int) -> float:
    """Mean loss on the assistant tokens of the validation rows: the same yardstick for both sides."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunedeck.core.data.conversation import Conversation, Message
    from tunedeck.core.data.tokenize import IGNORE_INDEX, encode_conversation
    from tunedeck.core.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(model))
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, adapter).eval()
    total, count = 0.0, 0
    for i, row in enumerate(json.loads(val.read_text(encoding="utf-8"))):
        conv = Conversation([Message("user", row["instruction"]), Message("assistant", row["output"])], row=i)
        sample = encode_conversation(tokenizer, conv, cutoff)
        labels = torch.tensor([sample.labels])
        with torch.no_grad():
            loss = tuned(input_ids=torch.tensor([sample.input_ids]), labels=labels).loss.item()
        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
        total, count = total + loss * n, count + n
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES), help="tunedeck batching modes to measure")
    parser.add_argument("--gpu", action="store_true", help="CUDA, bf16, a random model with --arch")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="qwen2.5-0.5b")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="tunedeck-bench-"))
    train, val = make_data(folder, args.rows, seed=0)
    model = build_model(args, folder)
    results: dict[str, list[dict]] = {"baseline": [], **{m: [] for m in args.modes.split(",")}}
    for round_index in range(args.rounds):
        for name in results:
            out = folder / f"{name}-{round_index}"
            report = (run_baseline(args, model, train, out) if name == "baseline"
                      else run_tunedeck(args, model, train, val, folder, name))
            report["val_loss"] = val_loss(model, report["adapter"], val, args.cutoff)
            report["tokens_per_s"] = report["train_tokens"] / report["train_seconds"]
            results[name].append(report)
            print(f"round {round_index + 1} {name:13} {report['tokens_per_s']:8.1f} tok/s  "
                  f"{report['train_seconds']:7.1f} s  val loss {report['val_loss']:.4f}", flush=True)
    print_table(results, args)


def print_table(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    base_rate = statistics.median(r["tokens_per_s"] for r in results["baseline"])
    where = f"GPU, {args.arch}, bf16" if args.gpu else "CPU, SmolLM2-135M, fp32"
    print(f"\n{where}; {args.steps} steps x batch {args.batch}, cutoff {args.cutoff}, LoRA r={args.rank}, "
          f"median of {args.rounds} rounds")
    print(f"{'':22} {'tokens/s':>9} {'ratio':>6} {'peak MiB':>9} {'val loss':>9}")
    for name, reports in results.items():
        rate = statistics.median(r["tokens_per_s"] for r in reports)
        peak = statistics.median(r["peak_memory"] for r in reports) / 2**20
        loss = statistics.median(r["val_loss"] for r in reports)
        label = "baseline (plain TRL)" if name == "baseline" else f"tunedeck {name}"
        mfu = ""
        if args.gpu:  # model FLOPs utilisation: 6 N FLOPs per trained token against H100 dense bf16 peak
            mfu = f" {100 * rate * 6 * args.params / H100_BF16_FLOPS:5.1f}% MFU"
        print(f"{label:22} {rate:9.1f} {rate / base_rate:6.2f} {peak:9.0f} {loss:9.4f}{mfu}")


if __name__ == "__main__":
    main()
