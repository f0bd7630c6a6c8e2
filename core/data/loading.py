"""From a DataConfig to conversations: open the file or corpus, detect the format, normalize, split."""

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
from tunedeck.core.data.placeholders import fill_placeholders
from tunedeck.core.data.records import Problem, Records, read_records, resolve_data_path
from tunedeck.core.errors import DataError


@dataclass
class LoadedData:
    source: str
    format: str
    conversations: list[Conversation]
    problems: list[Problem]
    layout: str = ""  # how a text corpus was read (one document per line, paragraphs, Markdown)


@dataclass
class DataSource:
    """A configured dataset, opened: a row file's records and how they map onto conversations, or a corpus's
    samples. Every entry point (training, the CLI, the app's inspector, estimate, eval) reads data through it."""

    path: Path
    format: str
    records: Records | None = None
    mapping: Mapping | None = None
    samples: list[Conversation] | None = None  # a Markdown / text corpus's samples
    layout: str = ""

    @property
    def rows(self) -> int:
        """Rows in the file (samples for a corpus)."""
        if self.records is None:
            return len(self.samples or [])
        return len(self.records.rows) + len(self.records.problems)

    def conversations(self, placeholders: dict[str, str] | None = None) -> tuple[list[Conversation], list[Problem]]:
        """Every row that is a conversation ({{name}} placeholders filled), and the rows that are not."""
        if self.records is None:
            return [fill_placeholders(c, placeholders) for c in self.samples or []], []
        assert self.mapping is not None
        return to_conversations(self.records, self.mapping, placeholders)


def open_source(cfg: DataConfig, tokenizer: Any | None = None, path: str | None = None) -> DataSource:
    """Open the data a DataConfig names (data.dataset_info + data.name win over data.path); `path` reads another
    file the same way (data.val_path). The tokenizer measures a corpus's chunks; without one they are estimated."""
    mapping = None
    if cfg.dataset_info:
        entry_file, mapping = mapping_from_dataset_info(Path(cfg.dataset_info).expanduser(), cfg.name or "")
        file = resolve_data_path(path) if path else entry_file
    else:
        file = resolve_data_path(path or cfg.path)
    corpus = corpus_format(file, cfg.format) if mapping is None else None
    if corpus:
        samples, layout = load_corpus(file, corpus, cfg, tokenizer)
        return DataSource(file, corpus, samples=samples, layout=layout)
    records = read_records(file)
    if mapping is None:
        mapping = Mapping.default(detect_format(records) if cfg.format == "auto" else cfg.format)
    return DataSource(file, mapping.name or mapping.formatting, records, mapping)


def describe_source(cfg: DataConfig) -> str:
    """Which data a config trains on, in one line; says so when data.path is set but not used."""
    if not cfg.dataset_info:
        return f"data: {cfg.path}" + (f" (format {cfg.format})" if cfg.format != "auto" else "")
    line = f"data: entry '{cfg.name}' of {cfg.dataset_info}"
    try:
        line += f" -> {mapping_from_dataset_info(Path(cfg.dataset_info).expanduser(), cfg.name or '')[0]}"
    except DataError as exc:
        line += f" ({exc.one_line()})"
    return line + f"; data.path ({cfg.path}) is not used"


def load_data(cfg: DataConfig, tokenizer: Any | None = None) -> LoadedData:
    """Read the configured file into conversations; unusable rows become problems, not crashes.

    The tokenizer measures the chunks of Markdown / text corpora; without one their sizes are estimated.
    """
    return _load(open_source(cfg, tokenizer), cfg)


def load_val_data(cfg: DataConfig, tokenizer: Any | None = None) -> LoadedData | None:
    """The separate validation file (data.val_path), read with the training file's format; None if unset."""
    if not cfg.val_path:
        return None
    if not resolve_data_path(cfg.val_path).exists():
        raise DataError("validation file not found", where=cfg.val_path, hint="check data.val_path")
    return _load(open_source(cfg, tokenizer, cfg.val_path), cfg)


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


def _load(source: DataSource, cfg: DataConfig) -> LoadedData:
    conversations, problems = source.conversations(cfg.placeholders)
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
            where=first.where(str(source.path)) if first else str(source.path),
            hint="check the columns against the format, or set data.format / data.dataset_info",
        )
    return LoadedData(str(source.path), source.format, usable, sorted(problems, key=lambda p: p.row), source.layout)


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
