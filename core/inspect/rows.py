"""The per-row work of an inspection (lint, token counts) in blocks of rows, on every CPU for large files."""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np

from tunedeck.core.data.formats import Mapping, convert_row
from tunedeck.core.data.loading import untrainable_reason
from tunedeck.core.data.placeholders import find_placeholders
from tunedeck.core.data.records import Problem, Row
from tunedeck.core.data.tool_format import template_lacks
from tunedeck.core.inspect.duplicates import RowKey, match_duplicates, row_key, sample_signatures, sample_words
from tunedeck.core.inspect.fast_render import ChatRenderer
from tunedeck.core.inspect.lengths import SampleTokens, TokenCounter, measure_sample
from tunedeck.core.inspect.report import Finding
from tunedeck.core.inspect.structure import conversation_findings, schema_findings, tool_format_findings
from tunedeck.core.inspect.text_checks import text_findings

BLOCK = 2048  # rows per block: the unit of progress, cancel checks and work handed to a process
WARM_UP = 256  # rows done here before forking, so that every process inherits filled caches
PARALLEL_FROM = 20_000  # fewer rows than this are not worth starting processes for


@dataclass
class RowJob:
    """Everything a block of rows needs; a forked process inherits it (caches included) without copying."""

    rows: Sequence[Row]
    mapping: Mapping
    counter: TokenCounter
    render: ChatRenderer
    cutoff: int
    system_prompt: str | None
    template: str = "auto"  # the chat template's name, for findings
    placeholders: dict[str, str] = field(default_factory=dict)  # values for {{name}} placeholders (data.placeholders)


@dataclass
class BlockResult:
    findings: list[Finding] = field(default_factory=list)
    roles: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[int, int | None, int, int, int]] = field(default_factory=list)  # row, line, 3 counts
    keys: list[RowKey] = field(default_factory=list)  # one per conversation, for duplicate checks
    placeholders: Counter[str] = field(default_factory=Counter)  # rows per {{name}} left unfilled
    signatures: tuple[np.ndarray, np.ndarray] | None = None  # MinHash signature and emptiness, per key


_JOB: RowJob | None = None  # the job of the forked pool's processes


def run_block(job: RowJob, start: int, stop: int) -> BlockResult:
    """Convert rows [start, stop) to conversations, lint them, key them for the duplicate checks, and count
    the tokens of those training would use."""
    out = BlockResult()
    texts = []
    for row in job.rows[start:stop]:
        try:
            conv = convert_row(row, job.mapping, job.placeholders)
        except ValueError as exc:
            out.findings += schema_findings([Problem(row.index, row.line, str(exc))])
            continue
        if any("{{" in m.content for m in conv.messages):
            out.placeholders.update({name for m in conv.messages for name in find_placeholders(m.content)})
        reason = untrainable_reason(conv)
        out.findings += conversation_findings(conv, reason)
        out.findings += text_findings(conv)
        for message in conv.messages:
            out.roles[message.role] = out.roles.get(message.role, 0) + 1
        out.keys.append(row_key(conv))
        texts.append(sample_words(conv))
        if reason is None:
            conv = conv.with_system(job.system_prompt)
            if conv.tools or any(m.tool_calls or m.role == "tool" for m in conv.messages):
                lacks = template_lacks(job.counter.tokenizer, conv.to_chat(), conv.tools, job.render)
                out.findings += tool_format_findings(conv, lacks, job.template)
            sample = measure_sample(job.counter, job.render, conv, job.cutoff)
            out.samples.append((row.index, row.line, sample.length, sample.assistant, sample.trained))
    out.signatures = sample_signatures(texts)
    return out


def _forked_block(start: int, stop: int) -> BlockResult:
    assert _JOB is not None
    return run_block(_JOB, start, stop)


def _processes(rows: int) -> int:
    """How many processes to use: one per CPU for large inputs, where fork is safe (no other threads)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    forkable = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    return min(cpus, 8) if rows >= PARALLEL_FROM and forkable and cpus > 1 else 1


def run_rows(job: RowJob, tick: Callable[[int], None]) -> Iterator[BlockResult]:
    """Results of every block in row order; `tick(rows)` after each block (it may raise to cancel)."""
    global _JOB
    processes = _processes(len(job.rows))
    first = WARM_UP if processes > 1 else 0
    blocks = [(0, first)] if first else []
    blocks += [(start, min(start + BLOCK, len(job.rows))) for start in range(first, len(job.rows), BLOCK)]
    if processes == 1 or len(blocks) < 2:
        for start, stop in blocks:
            result = run_block(job, start, stop)
            tick(stop - start)
            yield result
        return
    first = run_block(job, *blocks[0])  # warms the caches that the processes inherit
    tick(blocks[0][1] - blocks[0][0])
    yield first
    _JOB = job
    gc.freeze()  # keep the collector from touching (and so copying) every inherited page
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"))
    try:
        futures = {pool.submit(_forked_block, start, stop): number for number, (start, stop) in enumerate(blocks[1:])}
        done: dict[int, BlockResult] = {}
        following = 0
        for future in as_completed(futures):
            number = futures[future]
            done[number] = future.result()
            tick(blocks[number + 1][1] - blocks[number + 1][0])
            while following in done:
                yield done.pop(following)
                following += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()
        _JOB = None


def samples_of(results: Sequence[BlockResult]) -> tuple[list[tuple[int, int | None]], list[SampleTokens]]:
    """(row, line) and token counts of every trainable sample, in row order."""
    where, samples = [], []
    for result in results:
        for row, line, length, assistant, trained in result.samples:
            where.append((row, line))
            samples.append(SampleTokens(length, assistant, trained))
    return where, samples


def duplicates_of(results: Sequence[BlockResult], job: RowJob) -> list[Finding]:
    """Duplicate, conflict and near-duplicate findings across all blocks."""
    keys: list[RowKey] = []
    for result in results:
        keys += result.keys
    sig = np.concatenate([r.signatures[0] for r in results if r.signatures is not None])
    empty = np.concatenate([r.signatures[1] for r in results if r.signatures is not None])
    by_index: dict[int, Row] = {}

    def conversation(index: int):  # only rows whose hashes match are converted again, to confirm
        if not by_index:
            by_index.update((row.index, row) for row in job.rows)
        return convert_row(by_index[index], job.mapping, job.placeholders)

    return match_duplicates(keys, sig, empty, conversation)
