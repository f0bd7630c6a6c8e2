"""The longest training sample in tokens, after the chat template and the cutoff (loads the tokenizer)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.data.loading import load_data, load_val_data
from tunedeck.core.data.tokenize import encode_split
from tunedeck.core.errors import TunedeckError
from tunedeck.core.estimate.architecture import local_config_json
from tunedeck.core.models.loading import load_tokenizer
from tunedeck.core.models.templates import TEMPLATES

log = logging.getLogger(__name__)


def local_model_path(name_or_path: str) -> str | None:
    """A folder the tokenizer loads from without downloading or converting anything, else None."""
    config = local_config_json(name_or_path)
    return str(config.parent) if config is not None else (
        name_or_path if Path(name_or_path).expanduser().is_dir() else None)


def encoded_lengths(config: Config, tokenizer: Any) -> list[int]:
    """Token count of every usable row (train and validation), template applied, cut to data.cutoff_len; a corpus
    is chunked with the tokenizer, as training chunks it."""
    if config.model.template != "auto":
        tokenizer.chat_template = TEMPLATES[config.model.template].jinja
    rows = load_data(config.data, tokenizer).conversations
    val = load_val_data(config.data, tokenizer)
    if val is not None:
        rows = rows + val.conversations
    split = encode_split(tokenizer, rows, config.data.cutoff_len)
    return [len(sample.input_ids) for sample in split.samples]


def longest_sample(config: Config) -> tuple[int | None, str]:
    """(tokens of the longest sample, where the number comes from); None when the data or tokenizer is not here."""
    path = local_model_path(config.model.name_or_path)
    if path is None:
        return None, f"data.cutoff_len ({config.data.cutoff_len}): the tokenizer of {config.model.name_or_path} " \
                     "is not on this machine"
    try:
        lengths = encoded_lengths(config, load_tokenizer(path, config.model.trust_remote_code))
    except TunedeckError as exc:
        return None, f"data.cutoff_len ({config.data.cutoff_len}): {exc.one_line()}"
    if not lengths:
        return None, f"data.cutoff_len ({config.data.cutoff_len}): no usable sample"
    return max(lengths), f"the longest of {len(lengths)} samples in {config.data.path}"
