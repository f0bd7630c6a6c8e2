"""Inspect a dataset before training: load any supported format, lint every row, measure token lengths."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.config import DataConfig
from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.formats import FORMATS, Mapping, detect_format, mapping_from_dataset_info, to_conversations
from tunedeck.core.data.records import Problem, Records, read_records
from tunedeck.core.errors import ConfigError
from tunedeck.core.inspect.fast_render import ChatRenderer
from tunedeck.core.inspect.lengths import TokenCounter, length_findings
from tunedeck.core.inspect.report import KINDS, InspectReport
from tunedeck.core.inspect.rows import RowJob, duplicates_of, run_rows, samples_of
from tunedeck.core.inspect.structure import schema_findings
from tunedeck.core.models.templates import TEMPLATES

DEFAULT_MODEL = "builtin:smollm2-135m-instruct"
Progress = Callable[[int, int], None]


class InspectCancelled(Exception):
    """Raised by inspect_dataset when its cancel event is set; nothing is reported."""


@dataclass
class LoadedRows:
    """A data file read for inspection: every row that became a conversation, and the rows that did not."""

    source: str
    format: str
    rows: int
    conversations: list[Conversation]
    problems: list[Problem]


def read_source(path: str | Path, fmt: str | None = None, dataset_info: str | Path | None = None,
                name: str | None = None) -> tuple[Records, Mapping]:
    """The rows of a file (or of a dataset_info.json entry) and how they map onto conversations."""
    if dataset_info:
        if not name:
            raise ConfigError("--dataset-info needs --name: the entry to read", where=str(dataset_info))
        info = Path(dataset_info).expanduser()
        file, mapping = mapping_from_dataset_info(info, name)
        if not path or Path(path).expanduser().is_dir() or Path(path).expanduser().resolve() == info.resolve():
            path = file  # the entry's own file_name, next to dataset_info.json
        records = read_records(Path(path).expanduser())
        return records, mapping
    records = read_records(Path(path).expanduser())
    if fmt not in (None, "auto") and fmt not in FORMATS:
        raise ConfigError(f"unknown format '{fmt}'", where="--format", hint=f"use one of {', '.join(FORMATS)}")
    return records, Mapping.default(detect_format(records) if fmt in (None, "auto") else fmt)


def load_rows(path: str | Path, fmt: str | None = None, dataset_info: str | Path | None = None,
              name: str | None = None) -> LoadedRows:
    """Read a file (or a dataset_info.json entry) into conversations; unreadable files raise DataError."""
    records, mapping = read_source(path, fmt, dataset_info, name)
    conversations, problems = to_conversations(records, mapping)
    return LoadedRows(records.source, mapping.name or mapping.formatting, len(records.rows) + len(records.problems),
                      conversations, sorted(problems, key=lambda p: p.row))


def load_inspect_tokenizer(model: str | None = None) -> Any:
    """The tokenizer of the run's model (default: the builtin SmolLM2), without loading any weights."""
    from tunedeck.core.models.loading import BUILTIN_MODELS, cache_dir, load_tokenizer, resolve_model_path

    model = model or DEFAULT_MODEL
    if not model.startswith("builtin:") or model.removeprefix("builtin:") not in BUILTIN_MODELS:
        return load_tokenizer(resolve_model_path(model))
    builtin = BUILTIN_MODELS[model.removeprefix("builtin:")]
    converted = cache_dir() / "models" / f"{builtin.name}-v{builtin.version}"
    if (converted / "tokenizer_config.json").is_file():
        return load_tokenizer(str(converted))
    folder = cache_dir() / "tokenizers" / f"{builtin.name}-v{builtin.version}"
    if not (folder / "tokenizer_config.json").is_file():
        _save_gguf_tokenizer(builtin, folder)
    return load_tokenizer(str(folder))


def _save_gguf_tokenizer(builtin: Any, folder: Path) -> None:
    import os
    import shutil
    import tempfile

    from transformers import AutoTokenizer

    from tunedeck.core.models.loading import builtin_gguf_path

    gguf = builtin_gguf_path(builtin)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(staging)
        try:
            os.rename(staging, folder)
        except OSError:  # another process finished first
            if not (folder / "tokenizer_config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def chat_template_text(tokenizer: Any, template: str | None) -> tuple[str, str | None]:
    """(name shown in the report, jinja source) of the chat template the run will use."""
    if template in (None, "", "auto"):
        return "auto", getattr(tokenizer, "chat_template", None)
    if template not in TEMPLATES:
        raise ConfigError(f"unknown template '{template}'", where="--template",
                          hint=f"use auto or one of {', '.join(TEMPLATES)}")
    return template, TEMPLATES[template].jinja


def inspect_dataset(path: str | Path, fmt: str | None = None, dataset_info: str | Path | None = None,
                    name: str | None = None, template: str | None = None, cutoff: int | None = None,
                    tokenizer: Any = None, progress: Progress | None = None,
                    cancel: threading.Event | None = None, model: str | None = None,
                    system_prompt: str | None = None) -> InspectReport:
    """Lint every row and measure every sample's tokens as the run will see them.

    `progress(done, total)` is called after each block of rows (total = rows that became conversations);
    setting `cancel` stops the work at the next block of rows with InspectCancelled. Large files are
    processed by one process per CPU (forked, when no other thread runs in this process).
    Unreadable files raise DataError naming the file and line (the CLI's exit code 2).
    """
    cutoff = cutoff or DataConfig.model_fields["cutoff_len"].default
    records, mapping = read_source(path, fmt, dataset_info, name)
    total, done = len(records.rows), 0

    def tick(count: int) -> None:
        nonlocal done
        if cancel is not None and cancel.is_set():
            raise InspectCancelled()
        done += count
        if progress is not None:
            progress(min(done, total), total)

    if tokenizer is None:
        tokenizer = load_inspect_tokenizer(model)
    template_name, jinja = chat_template_text(tokenizer, template)
    job = RowJob(records.rows, mapping, TokenCounter(tokenizer), ChatRenderer(tokenizer, jinja), cutoff,
                 system_prompt)
    results = list(run_rows(job, tick))
    findings = schema_findings(records.problems) + duplicates_of(results, job)
    roles: dict[str, int] = {}
    for result in results:
        findings += result.findings
        for role, count in result.roles.items():
            roles[role] = roles.get(role, 0) + count
    where, samples = samples_of(results)
    stats, long_findings = length_findings(where, samples, cutoff)
    findings += long_findings
    order = {kind: number for number, kind in enumerate(KINDS)}
    findings.sort(key=lambda f: (f.row, order.get(f.kind, len(order))))
    if progress is not None:
        progress(total, total)
    return InspectReport(records.source, mapping.name or mapping.formatting, len(records.rows) + len(records.problems),
                         len(samples), template_name, stats,
                         findings, roles)
