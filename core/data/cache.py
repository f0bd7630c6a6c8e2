"""Tokenized splits kept on disk, keyed by everything that decides their content."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import atomic_dir
from tunedeck.core.config import Config
from tunedeck.core.data.loading import data_files

# Bump when tokenization (templates, masks, cutoff handling) changes what it produces.
TOKENIZATION_VERSION = "3"  # 2: Markdown / text corpora; 3: tool fallback form, one document per line in .txt


@dataclass
class TokenizedData:
    train: Any  # datasets.Dataset with input_ids and labels
    val: Any
    messages: list[tuple[str, str]]  # (level, text) reported when the data was prepared
    key: str


def tokenized_key(config: Config, tokenizer: Any) -> str:
    """A digest of the data files' bytes, the data settings, the split seed and the tokenizer."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(TOKENIZATION_VERSION.encode())
    for path in data_files(config.data):
        digest.update(str(path.resolve()).encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    settings = {"data": config.data.model_dump(mode="json"), "seed": config.train.seed}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update((tokenizer.chat_template or "").encode())
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else repr(tokenizer.get_vocab()).encode())
    digest.update(json.dumps([tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token]).encode())
    return digest.hexdigest()


def load_tokenized(folder: Path) -> TokenizedData | None:
    from datasets import load_from_disk

    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    train = load_from_disk(str(folder / "train"))
    val = load_from_disk(str(folder / "val")) if (folder / "val").is_dir() else train.select([])
    return TokenizedData(train, val, [tuple(m) for m in meta["messages"]], meta["key"])


def store_tokenized(folder: Path, data: TokenizedData) -> None:
    with atomic_dir(folder) as staging:
        data.train.save_to_disk(str(staging / "train"))
        if len(data.val):  # datasets cannot load back a saved empty dataset
            data.val.save_to_disk(str(staging / "val"))
        (staging / "meta.json").write_text(json.dumps({"key": data.key, "messages": data.messages}),
                                           encoding="utf-8")
