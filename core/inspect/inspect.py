"""Inspect a dataset before training: load any supported format, lint every row, measure token lengths."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.config import DataConfig
from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.corpus import CORPUS_FORMATS
from tunedeck.core.data.formats import FORMATS, mapping_from_dataset_info
from tunedeck.core.data.loading import open_source
from tunedeck.core.data.records import Problem
from tunedeck.core.errors import ConfigError
from tunedeck.core.inspect.corpus_report import corpus_report
from tunedeck.core.inspect.fast_render import ChatRenderer
from tunedeck.core.inspect.lengths import TokenCounter, length_findings
from tunedeck.core.inspect.report import KINDS, InspectReport
from tunedeck.core.inspect.rows import RowJob, duplicates_of, run_rows, samples_of
from tunedeck.core.inspect.structure import schema_findings
from tunedeck.core.models.loading import (
    BUILTIN_MODELS,
    builtin_gguf_path,
    cache_dir,
    load_tokenizer,
    resolve_model_path,
)
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
    layout: str = ""


def source_config(path: str | Path | DataConfig, fmt: str | None = None, dataset_info: str | Path | None = None,
                  name: str | None = None, **fields: Any) -> DataConfig:
    """The DataConfig the command line's arguments describe, so it reads data the way a run does. With
    --dataset-info, PATH may name the entry's file, the dataset_info.json or its folder, and nothing else."""
    if isinstance(path, DataConfig):
        return path
    fmt = fmt or "auto"
    if fmt not in ("auto", *FORMATS, *CORPUS_FORMATS):
        raise ConfigError(f"unknown format '{fmt}'", where="--format",
                          hint=f"use one of {', '.join((*FORMATS, *CORPUS_FORMATS))}")
    if dataset_info:
        if not name:
            raise ConfigError("--dataset-info needs --name: the entry to read", where=str(dataset_info))
        info = Path(dataset_info).expanduser()
        entry_file, _ = mapping_from_dataset_info(info, name)
        given = Path(path).expanduser() if path else None
        if given is not None and not given.is_dir() and given.resolve() not in (info.resolve(), entry_file.resolve()):
            raise ConfigError(f"{path} is not the file of entry '{name}' ({entry_file})", where=str(dataset_info),
                              hint="give the entry's file, or leave PATH out")
        return DataConfig(format=fmt, dataset_info=str(info), name=name, **fields)
    if not str(path):
        raise ConfigError("no data given",
                          hint="give a data file, a corpus folder, or --dataset-info FILE --name ENTRY")
    return DataConfig(path=str(path), format=fmt, **fields)


def load_rows(path: str | Path | DataConfig, fmt: str | None = None, dataset_info: str | Path | None = None,
              name: str | None = None, tokenizer: Any = None) -> LoadedRows:
    """Read a file, a dataset_info.json entry or a corpus (or what a DataConfig names) into conversations, as
    training reads it (placeholders filled); unreadable files raise DataError."""
    cfg = source_config(path, fmt, dataset_info, name)
    source = open_source(cfg, tokenizer)
    conversations, problems = source.conversations(cfg.placeholders)
    return LoadedRows(str(source.path), source.format, source.rows, conversations,
                      sorted(problems, key=lambda p: p.row), source.layout)


def load_inspect_tokenizer(model: str | None = None) -> Any:
    """The tokenizer of the run's model (default: the builtin SmolLM2), without loading any weights."""
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


def inspect_dataset(path: str | Path | DataConfig, fmt: str | None = None, dataset_info: str | Path | None = None,
                    name: str | None = None, template: str | None = None, cutoff: int | None = None,
                    tokenizer: Any = None, progress: Progress | None = None,
                    cancel: threading.Event | None = None, model: str | None = None,
                    system_prompt: str | None = None) -> InspectReport:
    """Lint every row and measure every sample's tokens as the run will see them.

    `path` is a data file, a corpus or a DataConfig (whose placeholders, system prompt and corpus settings then
    apply). `progress(done, total)` is called after each block of rows (total = rows that became conversations);
    setting `cancel` stops the work at the next block of rows with InspectCancelled. Large files are
    processed by one process per CPU (forked, when no other thread runs in this process).
    Unreadable files raise DataError naming the file and line (the CLI's exit code 2).
    """
    cfg = source_config(path, fmt, dataset_info, name)
    system_prompt = system_prompt or cfg.system_prompt
    cutoff = cutoff or cfg.cutoff_len
    if tokenizer is None:
        tokenizer = load_inspect_tokenizer(model)
    template_name, jinja = chat_template_text(tokenizer, template)
    source = open_source(cfg, tokenizer)
    if source.records is None:
        samples = [conv.with_system(system_prompt) for conv in source.conversations(cfg.placeholders)[0]]
        report = corpus_report(source.path, source.format, template_name, samples, tokenizer, cutoff, progress)
        report.layout = source.layout
        return report
    records, mapping = source.records, source.mapping
    assert mapping is not None
    total, done = len(records.rows), 0

    def tick(count: int) -> None:
        nonlocal done
        if cancel is not None and cancel.is_set():
            raise InspectCancelled()
        done += count
        if progress is not None:
            progress(min(done, total), total)

    job = RowJob(records.rows, mapping, TokenCounter(tokenizer), ChatRenderer(tokenizer, jinja), cutoff,
                 system_prompt, template_name, cfg.placeholders)
    results = list(run_rows(job, tick))
    findings = schema_findings(records.problems) + duplicates_of(results, job)
    roles: dict[str, int] = {}
    placeholders: Counter[str] = Counter()
    for result in results:
        findings += result.findings
        placeholders.update(result.placeholders)
        for role, count in result.roles.items():
            roles[role] = roles.get(role, 0) + count
    where, samples = samples_of(results)
    stats, long_findings = length_findings(where, samples, cutoff)
    findings += long_findings
    order = {kind: number for number, kind in enumerate(KINDS)}
    findings.sort(key=lambda f: (f.row, order.get(f.kind, len(order))))
    if progress is not None:
        progress(total, total)
    return InspectReport(str(source.path), source.format, source.rows, len(samples), template_name, stats,
                         findings, roles, placeholders=dict(placeholders.most_common()))
