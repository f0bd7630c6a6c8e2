"""From a DataConfig to conversations: resolve the file, detect the format, normalize, split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.config import DataConfig
from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.corpus import corpus_files, corpus_format, load_corpus
from tunedeck.core.data.formats import Mapping, detect_format, mapping_from_dataset_info, to_conversations
from tunedeck.core.data.records import Problem, read_records, resolve_data_path
from tunedeck.core.errors import DataError


@dataclass
class LoadedData:
    source: str
    format: str
    conversations: list[Conversation]
    problems: list[Problem]


def load_data(cfg: DataConfig, tokenizer: Any | None = None) -> LoadedData:
    """Read the configured file into conversations; unusable rows become problems, not crashes.

    The tokenizer measures the chunks of Markdown / text corpora; without one their sizes are estimated.
    """
    if cfg.dataset_info:
        path, mapping = mapping_from_dataset_info(Path(cfg.dataset_info).expanduser(), cfg.name or "")
        return _load(path, mapping, cfg)
    path = resolve_data_path(cfg.path)
    return _load(path, None, cfg, tokenizer)


def load_val_data(cfg: DataConfig, tokenizer: Any | None = None) -> LoadedData | None:
    """The separate validation file (data.val_path), read with the training file's format; None if unset."""
    if not cfg.val_path:
        return None
    mapping = None
    if cfg.dataset_info:
        _, mapping = mapping_from_dataset_info(Path(cfg.dataset_info).expanduser(), cfg.name or "")
    path = resolve_data_path(cfg.val_path)
    if not path.exists():
        raise DataError("validation file not found", where=str(path), hint="check data.val_path")
    return _load(path, mapping, cfg, tokenizer)


def data_files(cfg: DataConfig) -> list[Path]:
    """Every file whose content decides the training data."""
    files = []
    if cfg.dataset_info:
        info = Path(cfg.dataset_info).expanduser()
        files += [info, mapping_from_dataset_info(info, cfg.name or "")[0]]
    else:
        files += corpus_files(resolve_data_path(cfg.path))
    if cfg.val_path:
        files += corpus_files(resolve_data_path(cfg.val_path))
    return files


def _load(path: Path, mapping: Mapping | None, cfg: DataConfig, tokenizer: Any | None = None) -> LoadedData:
    corpus = corpus_format(path, cfg.format) if mapping is None else None
    if corpus:
        conversations, problems, fmt = load_corpus(path, corpus, cfg, tokenizer), [], corpus
    else:
        records = read_records(path)
        if mapping is None:
            mapping = Mapping.default(detect_format(records) if cfg.format == "auto" else cfg.format)
        conversations, problems = to_conversations(records, mapping)
        fmt = mapping.name or mapping.formatting
    usable: list[Conversation] = []
    for conv in conversations:
        reason = untrainable_reason(conv)
        if reason:
            problems.append(Problem(conv.row, conv.line, reason))
        else:
            usable.append(conv.with_system(cfg.system_prompt))
    if not usable:
        first = min(problems, key=lambda p: p.row) if problems else None
        raise DataError(
            f"no usable rows; first problem: {first.message}" if first else "no usable rows",
            where=first.where(str(path)) if first else str(path),
            hint="check the columns against the format, or set data.format / data.dataset_info",
        )
    return LoadedData(str(path), fmt, usable, sorted(problems, key=lambda p: p.row))


def untrainable_reason(conv: Conversation) -> str | None:
    """Why a conversation cannot teach anything, or None."""
    invalid = invalid_text(conv)
    if invalid:
        return invalid
    if "text" in conv.meta:  # continued-pretraining text: every token is trained
        return None if conv.meta["text"].strip() else "the text is empty"
    roles = [m.role for m in conv.messages]
    if "assistant" not in roles:
        return "no assistant turn to learn from"
    last_assistant = max(i for i, r in enumerate(roles) if r == "assistant")
    final = conv.messages[last_assistant]
    if not final.content.strip() and not final.tool_calls:
        return "the assistant answer is empty"
    if not any(m.content.strip() for m in conv.messages if m.role == "user"):
        return "no user turn with text"
    return None


def invalid_text(conv: Conversation) -> str | None:
    """Why a conversation's text cannot be tokenized (a lone surrogate: JSON's "\\ud800" is no character), or None."""
    try:
        extra = json.dumps([conv.tools, [m.tool_calls for m in conv.messages]], ensure_ascii=False)
    except (RecursionError, ValueError):
        return "its tools or tool calls are nested too deeply"
    for text in (conv.key(), extra):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"holds a lone surrogate ({text[exc.start]!r}), which is not valid Unicode"
    return None


def split_fraction(conv: Conversation, seed: int) -> float:
    """A stable number in [0, 1) for a conversation: the same row lands in the same split every run."""
    digest = hashlib.blake2b(f"{seed}\x00{conv.key()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_train_val(
    conversations: list[Conversation], val_size: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """Hash-based split; at least one validation row when val_size > 0 and there are two rows or more."""
    if val_size <= 0 or len(conversations) < 2:
        return list(conversations), []
    scored = [(split_fraction(c, seed), c) for c in conversations]
    val = [c for f, c in scored if f < val_size]
    if not val:
        val = [min(scored, key=lambda fc: fc[0])[1]]
    val_ids = {id(c) for c in val}
    return [c for c in conversations if id(c) not in val_ids], val
