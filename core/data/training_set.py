"""A run's data config to tokenized train / validation datasets, reported row by row and cached."""

from __future__ import annotations

import logging
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.data.cache import TokenizedData, load_tokenized, store_tokenized, tokenized_key
from tunedeck.core.data.loading import LoadedData, describe_source, load_data, load_val_data, split_train_val
from tunedeck.core.data.tokenize import EncodedSplit, encode_split
from tunedeck.core.data.tool_format import FALLBACK_NOTE, template_lacks
from tunedeck.core.errors import DataError
from tunedeck.core.models.loading import cache_dir
from tunedeck.core.models.templates import TEMPLATES
from tunedeck.core.private import private_dir
from tunedeck.core.stream.events import EventWriter, Log

log = logging.getLogger(__name__)


def prepare_data(config: Config, tokenizer: Any, events: EventWriter) -> TokenizedData:
    """Load, split and tokenize the data (or take it from the cache), reporting what is not trained as given."""
    if config.model.template != "auto":
        tokenizer.chat_template = TEMPLATES[config.model.template].jinja
    key = tokenized_key(config, tokenizer)
    folder = cache_dir() / "tokenized" / key
    if config.train.cache_tokenized:
        private_dir(folder.parent)  # tokenized training data: readable by its owner only
        cached = load_tokenized(folder)
        if cached is not None:
            for level, message in cached.messages:
                events.emit(Log(level=level, message=message))
            _say(events, f"tokenized data taken from the cache ({folder})")
            return cached
    messages: list[tuple[str, str]] = []

    def report(level: str, message: str) -> None:
        messages.append((level, message))
        events.emit(Log(level=level, message=message))
        log.info(message)

    train, val = _tokenize(config, tokenizer, report)
    prepared = TokenizedData(_as_dataset(train), _as_dataset(val), messages, key)
    if config.train.cache_tokenized:
        store_tokenized(folder, prepared)
    return prepared


def _tokenize(config: Config, tokenizer: Any, report) -> tuple[EncodedSplit, EncodedSplit]:
    if config.data.dataset_info:  # say which of data.path and the dataset_info entry is read
        report("info", describe_source(config.data))
    data = load_data(config.data, tokenizer)
    val_data = load_val_data(config.data, tokenizer)
    for loaded in (data, val_data):
        if loaded is not None and loaded.problems:
            report("warning", _problems_line(loaded))
    if val_data is not None:
        train_rows, val_rows = data.conversations, val_data.conversations
    else:
        train_rows, val_rows = split_train_val(data.conversations, config.data.val_size, config.train.seed)
    if config.data.max_samples:
        train_rows = train_rows[: config.data.max_samples]
    _report_tool_fallback(config, tokenizer, train_rows + val_rows, report)
    cutoff = config.data.cutoff_len
    train = encode_split(tokenizer, train_rows, cutoff)
    val = encode_split(tokenizer, val_rows, cutoff)
    for name, split in (("train", train), ("validation", val)):
        if split.truncated:
            report("warning", f"{split.truncated} {name} samples are longer than data.cutoff_len={cutoff} "
                   "and were cut")
        if split.dropped:
            rows = ", ".join(c.where(data.source) for c in split.dropped[:5])
            report("warning", f"{len(split.dropped)} {name} samples lost their whole answer to the cutoff "
                   f"and were dropped: {rows}")
    if not train.samples:
        raise DataError("no training samples left after the split and cutoff", where=data.source,
                        hint="raise data.cutoff_len or lower data.val_size")
    report("info", f"{data.format} data from {data.source}: {len(train.samples)} train / {len(val.samples)} "
           f"validation samples, {train.tokens} train tokens")
    return train, val


def _report_tool_fallback(config: Config, tokenizer: Any, rows: list, report) -> None:
    """Say so when samples carry tools or tool calls the chat template cannot show (never trained silently)."""
    lacking = sum(1 for conv in rows if template_lacks(tokenizer, conv.to_chat(), conv.tools))
    if lacking:
        report("warning", f"{lacking} samples carry tools or tool calls that the chat template "
               f"({config.model.template}) cannot show: {FALLBACK_NOTE}; model.template: qwen renders them natively")


def _problems_line(loaded: LoadedData) -> str:
    shown = "; ".join(f"{p.where(loaded.source)}: {p.message}" for p in loaded.problems[:5])
    more = f" (and {len(loaded.problems) - 5} more)" if len(loaded.problems) > 5 else ""
    return f"{len(loaded.problems)} rows skipped: {shown}{more}"


def _as_dataset(split: EncodedSplit) -> Any:
    from datasets import Dataset

    return Dataset.from_dict(split.as_columns())


def _say(events: EventWriter, message: str) -> None:
    log.info(message)
    events.emit(Log(level="info", message=message))
