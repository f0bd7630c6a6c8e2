"""The inspection report of a Markdown / text corpus: its chunks' token lengths as training encodes them, and
the findings that apply to chunked text (cut by the cutoff, answer lost, exact duplicate chunks)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.tokenize import IGNORE_INDEX, encode_conversation
from tunedeck.core.inspect.report import Finding, InspectReport, LengthStats


def _where(conv: Conversation) -> str:
    return f"{conv.meta['file']}:{conv.meta['line']}"


def corpus_report(source: str | Path, fmt: str, template: str, samples: list[Conversation], tokenizer: Any,
                  cutoff: int, progress: Callable[[int, int], None] | None = None) -> InspectReport:
    """Measure every chunk sample with the training encoder and report what the cutoff and duplicates do."""
    lengths: list[int] = []
    trained: list[int] = []
    assistant: list[int] = []
    findings: list[Finding] = []
    seen: dict[str, int] = {}
    for done, conv in enumerate(samples, start=1):
        sample = encode_conversation(tokenizer, conv, 1 << 30)  # whole: what the cutoff takes is counted too
        kept = sum(1 for label in sample.labels[:cutoff] if label != IGNORE_INDEX)
        lengths.append(sample.full_length)
        trained.append(kept)
        assistant.append(sample.trained_tokens)
        if kept == 0:
            findings.append(Finding("assistant_lost", "error", conv.row, conv.line,
                                    f"{_where(conv)}: {sample.full_length} tokens, every trained token is past "
                                    f"the cutoff {cutoff}", fix="raise data.cutoff_len or lower data.chunk_tokens"))
        elif sample.full_length > cutoff:
            findings.append(Finding("truncated", "warning", conv.row, conv.line,
                                    f"{_where(conv)}: {sample.full_length} tokens, cut at {cutoff}",
                                    fix="raise data.cutoff_len or lower data.chunk_tokens"))
        key = conv.key()
        if key in seen:
            findings.append(Finding("duplicate", "warning", conv.row, conv.line,
                                    f"{_where(conv)}: the same chunk as row {seen[key]}", other_row=seen[key]))
        seen.setdefault(key, conv.row)
        if progress is not None:
            progress(done, len(samples))
    stats = LengthStats(lengths, trained, cutoff, sum(n > cutoff for n in lengths), sum(t == 0 for t in trained),
                        [conv.row for conv in samples], assistant)
    roles: dict[str, int] = {}
    for conv in samples:
        for message in conv.messages:
            roles[message.role] = roles.get(message.role, 0) + 1
    return InspectReport(str(source), fmt, len(samples), len(samples), template if samples[0].messages else "none",
                         stats, findings, roles)
