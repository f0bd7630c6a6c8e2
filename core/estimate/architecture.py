"""A decoder model's shape (hidden size, layers, heads, vocab) and its parameter counts; pure Python, no torch."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunedeck.core.errors import ModelError

# Linear layers of a Llama-style block (Llama, Qwen2, Mistral, SmolLM2) and their (in, out) features.
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
LINEAR_MODULES = ATTENTION + MLP


@dataclass(frozen=True)
class Architecture:
    """The numbers of a model's config.json that decide its memory."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool
    head_dim: int | None = None  # None: hidden_size // num_heads
    qkv_bias: bool = False  # Qwen2 has biases on q, k and v
    source: str = ""  # where the numbers come from

    @property
    def head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head

    @property
    def kv_size(self) -> int:
        """Width of k (and of v): smaller than q with grouped-query attention."""
        return self.num_kv_heads * self.head

    def linear_shape(self, module: str) -> tuple[int, int]:
        h, i = self.hidden_size, self.intermediate_size
        return {"q_proj": (h, self.q_size), "k_proj": (h, self.kv_size), "v_proj": (h, self.kv_size),
                "o_proj": (self.q_size, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}[module]

    def layer_params(self) -> int:
        """One decoder block: attention (with GQA), SwiGLU MLP, two RMSNorm weights."""
        linear = sum(a * b for a, b in map(self.linear_shape, LINEAR_MODULES))
        bias = self.q_size + 2 * self.kv_size if self.qkv_bias else 0
        return linear + bias + 2 * self.hidden_size

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def total_params(self) -> int:
        """Every base weight: embeddings, blocks, final norm, and lm_head unless tied to the embeddings."""
        head = 0 if self.tie_embeddings else self.embedding_params()
        return self.embedding_params() + self.num_layers * self.layer_params() + self.hidden_size + head

    def linear_params(self) -> int:
        """Weights inside the blocks' linear layers: what 4-bit / 8-bit quantization shrinks."""
        return self.num_layers * sum(a * b for a, b in map(self.linear_shape, LINEAR_MODULES))

    def lora_params(self, r: int, target_modules: str | list[str]) -> int:
        """Trainable parameters of LoRA adapters of rank r: r x (in + out) per adapted linear layer."""
        return self.num_layers * sum(r * sum(self.linear_shape(m)) for m in lora_targets(target_modules))


def lora_targets(target_modules: str | list[str]) -> tuple[str, ...]:
    """The block linears that get adapters ('all-linear': all seven; lm_head is never adapted by it)."""
    if isinstance(target_modules, str):
        if target_modules == "all-linear":
            return LINEAR_MODULES
        target_modules = [target_modules]
    return tuple(m for m in LINEAR_MODULES if m in target_modules)


def _arch(name, h, layers, heads, kv, inter, vocab, tied, head_dim=None, bias=False) -> Architecture:
    return Architecture(name, h, layers, heads, kv, inter, vocab, tied, head_dim, bias)


# Published config.json values of each model on the Hugging Face hub (hidden_size, num_hidden_layers,
# num_attention_heads, num_key_value_heads, intermediate_size, vocab_size, tie_word_embeddings). Instruct and
# base variants share a shape. Sources: huggingface.co/{Qwen/Qwen2.5-*, meta-llama/Meta-Llama-3-8B,
# meta-llama/Llama-3.1-8B, HuggingFaceTB/SmolLM2-*, mistralai/Mistral-7B-v0.1 and -v0.3}/blob/main/config.json.
KNOWN_ARCHITECTURES: dict[str, Architecture] = {a.name.lower(): a for a in (
    _arch("Qwen2.5-0.5B", 896, 24, 14, 2, 4864, 151936, True, bias=True),
    _arch("Qwen2.5-1.5B", 1536, 28, 12, 2, 8960, 151936, True, bias=True),
    _arch("Qwen2.5-3B", 2048, 36, 16, 2, 11008, 151936, True, bias=True),
    _arch("Qwen2.5-7B", 3584, 28, 28, 4, 18944, 152064, False, bias=True),
    _arch("Qwen2.5-14B", 5120, 48, 40, 8, 13824, 152064, False, bias=True),
    _arch("Meta-Llama-3-8B", 4096, 32, 32, 8, 14336, 128256, False),
    _arch("Llama-3.1-8B", 4096, 32, 32, 8, 14336, 128256, False),
    _arch("SmolLM2-135M", 576, 30, 9, 3, 1536, 49152, True),
    _arch("SmolLM2-360M", 960, 32, 15, 5, 2560, 49152, True),
    _arch("SmolLM2-1.7B", 2048, 24, 32, 32, 8192, 49152, True),
    _arch("Mistral-7B-v0.1", 4096, 32, 32, 8, 14336, 32000, False),
    _arch("Mistral-7B-v0.3", 4096, 32, 32, 8, 14336, 32768, False),
)}
ALIASES = {"llama-3-8b": "meta-llama-3-8b", "mistral-7b": "mistral-7b-v0.1", "smollm2-135m": "smollm2-135m"}


def _table_key(name_or_path: str) -> str | None:
    """The table entry for a hub id or builtin name: org, '-Instruct' and similar suffixes are ignored."""
    base = name_or_path.removeprefix("builtin:").rstrip("/").split("/")[-1].lower()
    base = re.sub(r"-(instruct|chat|it|base)(-\d+)?$", "", base)
    base = ALIASES.get(base, base)
    return base if base in KNOWN_ARCHITECTURES else None


def from_config_json(data: dict[str, Any], name: str) -> Architecture:
    """The numbers from a transformers config.json (Llama-style decoders)."""
    text = data.get("text_config") if isinstance(data.get("text_config"), dict) else data
    try:
        heads = int(text["num_attention_heads"])
        return Architecture(
            name=name, hidden_size=int(text["hidden_size"]), num_layers=int(text["num_hidden_layers"]),
            num_heads=heads, num_kv_heads=int(text.get("num_key_value_heads") or heads),
            intermediate_size=int(text["intermediate_size"]), vocab_size=int(text["vocab_size"]),
            tie_embeddings=bool(data.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
            head_dim=int(text["head_dim"]) if text.get("head_dim") else None,
            qkv_bias=text.get("model_type") == "qwen2" or bool(text.get("attention_bias", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"config.json lacks {exc} needed for the memory estimate", where=name) from None


def local_config_json(name_or_path: str) -> Path | None:
    """config.json of a local folder, of the builtin model's converted folder, or of a cached hub snapshot."""
    if name_or_path.startswith("builtin:"):
        from tunedeck.core.models.loading import BUILTIN_MODELS, cache_dir

        model = BUILTIN_MODELS.get(name_or_path.removeprefix("builtin:"))
        path = cache_dir() / "models" / f"{model.name}-v{model.version}" / "config.json" if model else None
        return path if path and path.is_file() else None
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path / "config.json" if (path / "config.json").is_file() else None
    if name_or_path.count("/") != 1:
        return None
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    snapshots = Path(hub) / f"models--{name_or_path.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return found[-1] if found else None


def resolve_architecture(name_or_path: str) -> Architecture:
    """The model's shape: from its local config.json when there is one, else from the built-in table."""
    config = local_config_json(name_or_path)
    if config is not None:
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read config.json: {exc}", where=str(config)) from None
        return replace(from_config_json(data, name_or_path), source=str(config))
    key = _table_key(name_or_path)
    if key is None:
        known = ", ".join(a.name for a in KNOWN_ARCHITECTURES.values())
        raise ModelError("no config.json here and not a model tunedeck knows the shape of", where=name_or_path,
                         hint=f"download the model (its config.json is enough) or use one of: {known}")
    return replace(KNOWN_ARCHITECTURES[key], source="tunedeck's table of published config.json values")
