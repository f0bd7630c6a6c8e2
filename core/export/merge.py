"""Merge a LoRA adapter into its base model and save the result as safetensors with the training tokenizer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import atomic_dir
from tunedeck.core.errors import ModelError

log = logging.getLogger(__name__)

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def resolve_merge_dtype(requested: str, training_precision: str | None) -> str:
    """'auto' keeps the training precision, except fp32 training, which exports fp16 (half the size)."""
    if requested != "auto":
        return requested
    return training_precision if training_precision in ("fp16", "bf16") else "fp16"


def merge_adapter(base_path: str, adapter_dir: Path, target: Path, dtype: str) -> Path:
    """Load base + adapter, fold the adapter into the weights, save to `target` atomically."""
    import torch
    from peft import PeftModel

    from tunedeck.core.models.loading import load_causal_lm, load_tokenizer

    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelError("no adapter_config.json: not a LoRA adapter folder", where=str(adapter_dir))
    torch_dtype = getattr(torch, DTYPES[dtype])
    # Fold in fp32 when the target is fp32; otherwise load straight in the target dtype to halve peak memory.
    base = load_causal_lm(base_path, torch_dtype)
    try:
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"the adapter does not fit the base model: {str(exc).splitlines()[0]}",
                         where=str(adapter_dir), hint="export the run with the base model it was trained on") from None
    merged = model.merge_and_unload()
    merged = merged.to(torch_dtype)
    tokenizer = _training_tokenizer(adapter_dir, base_path, load_tokenizer)
    _drop_training_only_config(merged)
    with atomic_dir(target) as staging:
        merged.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    log.info("merged %s into %s (%s)", adapter_dir, target, dtype)
    return target


def _training_tokenizer(adapter_dir: Path, base_path: str, load_tokenizer: Any) -> Any:
    """The tokenizer saved with the adapter: it carries the chat template the run trained with."""
    if (adapter_dir / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(str(adapter_dir))
    else:
        tokenizer = load_tokenizer(base_path)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError("the adapter's tokenizer has no chat template", where=str(adapter_dir),
                         hint="set model.template (chatml, qwen or llama3) and train again")
    return tokenizer


def _drop_training_only_config(model: Any) -> None:
    config = model.config
    if getattr(config, "use_cache", None) is False:
        config.use_cache = True  # gradient checkpointing turns the cache off; inference wants it on
    if hasattr(config, "quantization_config"):
        del config.quantization_config
