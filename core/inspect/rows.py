"""The per-row work of an inspection (lint, token counts) in blocks of rows, on every CPU for large files."""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.loading import untrainable_reason
from tunedeck.core.inspect.fast_render import ChatRenderer
from tunedeck.core.inspect.lengths import SampleTokens, TokenCounter, measure_sample
from tunedeck.core.inspect.report import Finding
from tunedeck.core.inspect.structure import conversation_findings
from tunedeck.core.inspect.text_checks import text_findings

BLOCK = 4096  # rows per block: the unit of progress, cancel checks and work handed to a process
PARALLEL_FROM = 20_000  # fewer rows than this are not worth starting processes for


@dataclass
class RowJob:
    """Everything a block of rows needs; a forked process inherits it (caches included) without copying."""

    conversations: Sequence[Conversation]
    counter: TokenCounter
    render: ChatRenderer
    cutoff: int
    system_prompt: str | None


@dataclass
class BlockResult:
    findings: list[Finding] = field(default_factory=list)
    roles: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[int, int, int, int]] = field(default_factory=list)  # index, length, assistant, trained


_JOB: RowJob | None = None  # the job of the forked pool's processes


def run_block(job: RowJob, start: int, stop: int) -> BlockResult:
    """Lint rows [start, stop) and count the tokens of those training would use."""
    out = BlockResult()
    for index in range(start, min(stop, len(job.conversations))):
        conv = job.conversations[index]
        out.findings += conversation_findings(conv)
        out.findings += text_findings(conv)
        for message in conv.messages:
            out.roles[message.role] = out.roles.get(message.role, 0) + 1
        if untrainable_reason(conv) is None:
            sample = measure_sample(job.counter, job.render, conv.with_system(job.system_prompt), job.cutoff)
            out.samples.append((index, sample.length, sample.assistant, sample.trained))
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


def run_rows(job: RowJob, tick: Callable[[int], None], meanwhile: Callable[[], None] = lambda: None,
             ) -> Iterator[BlockResult]:
    """Results of every block in row order; `tick(rows)` after each block (it may raise to cancel).
    `meanwhile` is other work for this process, done before any row."""
    global _JOB
    blocks = [(start, min(start + BLOCK, len(job.conversations))) for start in range(0, len(job.conversations), BLOCK)]
    processes = _processes(len(job.conversations))
    if processes == 1 or len(blocks) < 2:
        meanwhile()
        for start, stop in blocks:
            result = run_block(job, start, stop)
            tick(stop - start)
            yield result
        return
    meanwhile()  # before the fork: run alongside the processes, it would fight them for pages and CPUs
    first = run_block(job, *blocks[0])  # warms the caches that the processes inherit
    tick(BLOCK)
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


def samples_of(results: Sequence[BlockResult]) -> tuple[list[int], list[SampleTokens]]:
    indexes, samples = [], []
    for result in results:
        for index, length, assistant, trained in result.samples:
            indexes.append(index)
            samples.append(SampleTokens(length, assistant, trained))
    return indexes, samples
