"""Baseline for bench/train_throughput.py: the plain TRL SFT + LoRA script a user would write by hand.

It reads the same train file as tunedeck, uses the same model, LoRA, batch, learning rate, cutoff,
precision and steps, and prints one JSON line: training seconds, real tokens, peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="Alpaca JSON: instruction / output")
    parser.add_argument("--out", required=True, help="folder for the adapter")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()

    rows = json.loads(Path(args.data).read_text(encoding="utf-8"))
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": r["instruction"]}],
         "completion": [{"role": "assistant", "content": r["output"]}]} for r in rows
    ])
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    config = SFTConfig(
        output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=1, save_strategy="no", report_to="none", max_length=args.cutoff, bf16=args.bf16,
        use_cpu=not torch.cuda.is_available(), gradient_checkpointing=False, seed=args.seed, data_seed=args.seed,
        dataloader_pin_memory=torch.cuda.is_available(), disable_tqdm=True,
    )
    lora = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.save_pretrained(args.out)
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log and "train_runtime" not in log]
    print(json.dumps({"train_seconds": seconds, "train_tokens": int(trainer._total_train_tokens),
                      "peak_memory": int(peak), "losses": losses}))


if __name__ == "__main__":
    main()
