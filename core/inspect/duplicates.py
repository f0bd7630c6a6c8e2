"""Exact, near (MinHash LSH) and conflicting duplicates across the rows of a dataset."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.inspect.report import Finding

NUM_PERM = 64
SEED = 1
THRESHOLD = 0.8
K = 6  # characters per shingle
SAMPLE = 8  # keep one K-gram in SAMPLE (chosen by hash; a power of two), ...
MIN_SHINGLES = 16  # ... unless that leaves a text fewer than this


def duplicate_findings(conversations: Sequence[Conversation], threshold: float = THRESHOLD) -> list[Finding]:
    """One finding per row that repeats, nearly repeats, or contradicts an earlier row."""
    findings: list[Finding] = []
    first_of: dict[str, int] = {}
    answer_of: dict[str, tuple[int, str]] = {}
    unique: list[int] = []
    for index, conv in enumerate(conversations):
        key = conv.key() + "\x1d" + (json.dumps(conv.tools, sort_keys=True) if conv.tools else "")
        earlier = first_of.setdefault(key, index)
        if earlier != index:
            other = conversations[earlier]
            findings.append(Finding("duplicate", "warning", conv.row, conv.line,
                                    f"the same sample as row {other.row}" + _line(other),
                                    "remove the repeat (it is trained twice)", other_row=other.row))
            continue
        unique.append(index)
        prompt, answer = _prompt_answer(conv)
        if prompt is None:
            continue
        seen = answer_of.setdefault(prompt, (index, answer))
        if seen[1] != answer:
            other = conversations[seen[0]]
            findings.append(Finding("conflict", "warning", conv.row, conv.line,
                                    f"the same prompt as row {other.row}{_line(other)} with a different answer",
                                    "keep the better answer, or make the prompts differ", other_row=other.row))
    for index, earlier in near_duplicates([conversations[i] for i in unique], threshold):
        conv, other = conversations[unique[index]], conversations[unique[earlier]]
        findings.append(Finding("near_duplicate", "info", conv.row, conv.line,
                                f"nearly the same sample as row {other.row}{_line(other)}",
                                "check whether both rows are needed", other_row=other.row))
    return findings


def _line(conv: Conversation) -> str:
    return f" (line {conv.line})" if conv.line else ""


def _prompt_answer(conv: Conversation) -> tuple[str | None, str]:
    """Everything before the last assistant turn, and that turn (text and calls)."""
    last = max((i for i, m in enumerate(conv.messages) if m.role == "assistant"), default=None)
    if last is None or last == 0:
        return None, ""
    final = conv.messages[last]
    answer = final.content + (json.dumps(final.tool_calls, sort_keys=True) if final.tool_calls else "")
    prompt = "\x1e".join(f"{m.role}\x1f{m.content}" for m in conv.messages[:last])
    return prompt, answer


def shingles(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The shingle set of each text as 32-bit hashes: its character K-grams (lower-cased), of which only
    those whose hash is 0 mod SAMPLE are kept (the same K-grams in every text, so overlaps survive), or all
    of them for short texts. Returns (hashes, row of each hash), rows ascending."""
    texts = [text.lower() for text in texts]
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    codes = np.frombuffer("".join(texts).encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    count = len(codes) - K + 1
    if count <= 0:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    rolling = codes[:count].copy()
    for offset in range(1, K):
        rolling *= np.uint32(0x01000193)
        rolling += codes[offset:offset + count]
    rolling ^= rolling >> np.uint32(15)
    rolling *= np.uint32(0x2C1B3C6D)
    rolling ^= rolling >> np.uint32(12)
    row_of = np.repeat(np.arange(len(texts), dtype=np.int32), lens)
    valid = row_of[:count] == row_of[K - 1:]
    row_of = row_of[:count]
    sampled = valid & ((rolling & np.uint32(SAMPLE - 1)) == 0)
    short = np.bincount(row_of[sampled], minlength=len(texts)) < MIN_SHINGLES
    keep = sampled | (valid & short[row_of])
    return rolling[keep], row_of[keep].astype(np.int64)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch's affine32 scheme applies it before permuting."""
    h = h.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def permutations(num_perm: int = NUM_PERM, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b) for this seed."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def signatures(hashes: np.ndarray, rows: np.ndarray, count: int, num_perm: int = NUM_PERM,
               seed: int = SEED) -> np.ndarray:
    """MinHash signatures of `count` shingle sets given as (hashes, row of each hash), rows ascending.
    Row i equals datasketch's MinHash(num_perm, seed, hashfunc=int), update_batch(its hashes), hashvalues;
    a row without shingles stays all-max."""
    a, b = permutations(num_perm, seed)
    out = np.full((count, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if not len(hashes):
        return out
    mixed = _fmix32(hashes)
    step = max(1, (1 << 22) // num_perm)  # shingles per block, bounding memory
    for start in range(0, len(mixed), step):
        block_rows = rows[start:start + step]
        permuted = mixed[start:start + step, None] * a[None, :] + b[None, :]
        firsts = np.flatnonzero(np.r_[True, block_rows[1:] != block_rows[:-1]])
        mins = np.minimum.reduceat(permuted, firsts, axis=0)
        targets = block_rows[firsts]
        out[targets] = np.minimum(out[targets], mins)
    return out


def lsh_bands(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """datasketch's choice of (bands, rows per band) for this threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def near_duplicates(conversations: Sequence[Conversation], threshold: float = THRESHOLD) -> list[tuple[int, int]]:
    """(index, earlier index) pairs whose estimated Jaccard similarity of word bigrams reaches the threshold."""
    if len(conversations) < 2:
        return []
    hashes, rows = shingles(["\n".join(m.content for m in conv.messages) for conv in conversations])
    sig = signatures(hashes, rows, len(conversations))
    empty = np.bincount(rows, minlength=len(conversations)) == 0
    bands, rows = lsh_bands(threshold)
    candidates: dict[int, set[int]] = {}
    for band in range(bands):
        part = sig[:, band * rows:(band + 1) * rows].astype(np.uint64)
        keys = np.zeros(len(sig), dtype=np.uint64)
        for column in range(rows):
            keys = keys * np.uint64(0x100000001B3) + part[:, column]
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        same = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
        if not len(same):
            continue
        group_start = np.maximum.accumulate(np.where(np.r_[True, ordered[1:] != ordered[:-1]],
                                                     np.arange(len(ordered)), 0))
        for position in same:
            index, first = int(order[position]), int(order[group_start[position]])
            if not empty[index]:
                candidates.setdefault(index, set()).add(first)
    pairs = []
    for index in sorted(candidates):
        for earlier in sorted(candidates[index]):
            if float(np.mean(sig[index] == sig[earlier])) >= threshold:
                pairs.append((index, earlier))
                break
    return pairs
