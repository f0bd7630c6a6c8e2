"""Exact, near (MinHash LSH) and conflicting duplicates across the rows of a dataset."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence

import numpy as np

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.inspect.report import Finding

NUM_PERM = 64
SEED = 1
THRESHOLD = 0.8
# Words, and CJK characters one by one (those scripts do not separate words with spaces).
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W_]+")
_M32 = np.uint64(0xFFFFFFFF)


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


def shingle_hashes(text: str, cache: dict[str, int]) -> np.ndarray:
    """32-bit hashes of the word bigrams of a text (lower-cased; CJK characters count as words)."""
    words = _TOKEN.findall(text.lower())
    hashes = np.fromiter((cache[w] if w in cache else cache.setdefault(w, zlib.crc32(w.encode())) for w in words),
                         dtype=np.uint64, count=len(words))
    if len(hashes) < 2:
        return hashes
    return (hashes[:-1] * np.uint64(0x9E3779B1) + hashes[1:]) & _M32


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


def signatures(shingles: Sequence[np.ndarray], num_perm: int = NUM_PERM, seed: int = SEED,
               block: int = 2048) -> np.ndarray:
    """MinHash signatures of many shingle sets at once; row i equals datasketch's
    MinHash(num_perm, seed, hashfunc=int).update_batch(shingles[i]).hashvalues. Empty sets give all-max rows."""
    a, b = permutations(num_perm, seed)
    out = np.full((len(shingles), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    for start in range(0, len(shingles), block):
        chunk = shingles[start:start + block]
        sizes = np.fromiter((len(s) for s in chunk), dtype=np.int64, count=len(chunk))
        filled = np.flatnonzero(sizes)
        if not len(filled):
            continue
        values = _fmix32(np.concatenate([chunk[i] for i in filled]))
        permuted = values[:, None] * a[None, :] + b[None, :]
        offsets = np.concatenate(([0], np.cumsum(sizes[filled])[:-1]))
        out[start + filled] = np.minimum.reduceat(permuted, offsets, axis=0)
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
    cache: dict[str, int] = {}
    shingles = [shingle_hashes(" ".join(m.content for m in conv.messages), cache) for conv in conversations]
    sig = signatures(shingles)
    empty = np.array([len(s) == 0 for s in shingles])
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
