"""Exact, near (MinHash LSH) and conflicting duplicates across the rows of a dataset."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.inspect.report import Finding

NUM_PERM = 64
SEED = 1
THRESHOLD = 0.8
GRAM = 8  # bytes per shingle
SAMPLE = 16  # keep one gram in SAMPLE (chosen by hash; a power of two), ...
MIN_SHINGLES = 8  # ... unless that leaves a text fewer than this


RowKey = tuple[int, "int | None", int, "int | None", int]  # row, line, sample hash, prompt hash, answer hash


def row_key(conv: Conversation) -> RowKey:
    """What duplicate checks compare, hashed: the whole sample, the prompt (None without one) and the answer."""
    turns = tuple((m.role, m.content, _calls(m.tool_calls)) for m in conv.messages)
    last = max((i for i, m in enumerate(conv.messages) if m.role == "assistant"), default=0)
    prompt = hash(turns[:last]) if last else None
    return conv.row, conv.line, hash((turns, _calls(conv.tools))), prompt, hash(turns[last])


def _calls(value: object) -> str:
    return json.dumps(value, sort_keys=True) if value else ""


def _sample_text(conv: Conversation) -> str:
    return conv.key() + "\x1d" + (json.dumps(conv.tools, sort_keys=True) if conv.tools else "")


def duplicate_findings(conversations: Sequence[Conversation], threshold: float = THRESHOLD) -> list[Finding]:
    """One finding per row that repeats, nearly repeats, or contradicts an earlier row."""
    keys = [row_key(conv) for conv in conversations]
    sig, empty = sample_signatures([sample_words(conv) for conv in conversations])
    by_row = {conv.row: conv for conv in conversations}
    return match_duplicates(keys, sig, empty, lambda row: by_row[row], threshold)


def sample_signatures(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures of texts, and which texts had no shingle at all."""
    hashes, rows = shingles(texts)
    return signatures(hashes, rows, len(texts)), np.bincount(rows, minlength=len(texts)) == 0


def sample_words(conv: Conversation) -> str:
    """The text near-duplicate detection compares."""
    return "\n".join(m.content for m in conv.messages)


def match_duplicates(keys: Sequence[RowKey], sig: np.ndarray, empty: np.ndarray,
                     conversation: Callable[[int], Conversation], threshold: float = THRESHOLD) -> list[Finding]:
    """Findings from every sample's key and MinHash signature (`sig[i]`, `empty[i]` for keys[i]). Equal
    hashes are confirmed on the conversations themselves (`conversation(row)`), so a hash collision never
    reports a duplicate."""
    findings: list[Finding] = []
    first_of: dict[int, int] = {}
    answer_of: dict[int, tuple[int, int]] = {}
    unique = np.ones(len(keys), dtype=bool)
    for index, (row, line, sample, prompt, answer) in enumerate(keys):
        earlier = first_of.setdefault(sample, index)
        if earlier != index and _sample_text(conversation(keys[earlier][0])) == _sample_text(conversation(row)):
            other_row, other_line = keys[earlier][:2]
            findings.append(Finding("duplicate", "warning", row, line,
                                    f"the same sample as row {other_row}{_line(other_line)}",
                                    "remove the repeat (it is trained twice)", other_row=other_row))
            unique[index] = False
            continue
        if prompt is None:
            continue
        seen = answer_of.setdefault(prompt, (index, answer))
        if seen[1] != answer and _prompt_answer(conversation(keys[seen[0]][0]))[0] == _prompt_answer(
                conversation(row))[0]:
            other_row, other_line = keys[seen[0]][:2]
            findings.append(Finding("conflict", "warning", row, line, f"the same prompt as row {other_row}"
                                    f"{_line(other_line)} with a different answer",
                                    "keep the better answer, or make the prompts differ", other_row=other_row))
    positions = np.flatnonzero(unique)
    for index, earlier in similar_pairs(sig[positions], empty[positions], threshold):
        (row, line), (other_row, other_line) = keys[positions[index]][:2], keys[positions[earlier]][:2]
        findings.append(Finding("near_duplicate", "info", row, line,
                                f"nearly the same sample as row {other_row}{_line(other_line)}",
                                "check whether both rows are needed", other_row=other_row))
    return findings


def _line(line: int | None) -> str:
    return f" (line {line})" if line else ""


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
    """The shingle set of each text as 32-bit hashes: its overlapping 8-byte grams (UTF-8, lower-cased), of
    which only those whose hash is 0 mod SAMPLE are kept (the same grams in every text, so overlaps survive),
    or all of them for short texts. Returns (hashes, row of each hash), rows ascending."""
    encoded = [text.lower().encode("utf-8", errors="surrogatepass") for text in texts]
    ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
    data = b"".join(encoded) + bytes(GRAM)
    total = len(data) - GRAM
    found_hashes, found_starts = [], []
    for offset in range(GRAM):  # grams starting at offset, offset + GRAM, ...: one uint64 view each, no copy
        count = (total - offset) // GRAM
        if count <= 0:
            continue
        grams = np.frombuffer(data, dtype=np.uint64, count=count, offset=offset)
        mixed = (grams * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
        picked = np.flatnonzero((mixed & np.uint64(SAMPLE - 1)) == 0)
        found_hashes.append(mixed[picked])
        found_starts.append(picked * GRAM + offset)
    starts = np.concatenate(found_starts) if found_starts else np.zeros(0, np.int64)
    hashes = np.concatenate(found_hashes) if found_hashes else np.zeros(0, np.uint64)
    rows = np.searchsorted(ends, starts, side="right")
    inside = starts + GRAM <= np.r_[ends, 0][rows]  # the gram ends within its own text
    hashes, rows, starts = hashes[inside], rows[inside], starts[inside]
    short = np.flatnonzero(np.bincount(rows, minlength=len(texts)) < MIN_SHINGLES)
    if len(short):  # short texts keep every gram
        keep = ~np.isin(rows, short)
        extra = [_all_grams(data, int(ends[r] - len(encoded[r])), int(ends[r])) for r in short]
        hashes = np.concatenate([hashes[keep], *extra])
        rows = np.concatenate([rows[keep], *[np.full(len(e), r) for e, r in zip(extra, short, strict=True)]])
        starts = np.concatenate([starts[keep], *[np.zeros(len(e), np.int64) for e in extra]])
    order = np.lexsort((starts, rows))
    return hashes[order].astype(np.uint32), rows[order]


def _all_grams(data: bytes, start: int, end: int) -> np.ndarray:
    if end - start < GRAM:
        text = data[start:end] + bytes(GRAM - (end - start))
        return (np.frombuffer(text, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32) \
            if end > start else np.zeros(0, np.uint64)
    window = np.lib.stride_tricks.sliding_window_view(np.frombuffer(data, np.uint8, end - start, start), GRAM)
    grams = window.copy().view(np.uint64).ravel()
    return (grams * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch's affine32 scheme applies it before permuting."""
    h = h.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


@lru_cache(maxsize=4)
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
    firsts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    targets = rows[firsts]
    permuted = np.empty_like(mixed)
    for column in range(num_perm):  # one permutation at a time: 1-D reductions are far faster than 2-D ones
        np.multiply(mixed, a[column], out=permuted)
        permuted += b[column]
        out[targets, column] = np.minimum.reduceat(permuted, firsts)
    return out


@lru_cache(maxsize=4)
def lsh_bands(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """datasketch's choice of (bands, rows per band) for this threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def near_duplicates(conversations: Sequence[Conversation], threshold: float = THRESHOLD) -> list[tuple[int, int]]:
    """(index, earlier index) pairs whose estimated Jaccard similarity of shingles reaches the threshold."""
    hashes, rows = shingles([sample_words(conv) for conv in conversations])
    return near_pairs(hashes, rows, len(conversations), threshold)


def near_pairs(hashes: np.ndarray, rows: np.ndarray, count: int,
               threshold: float = THRESHOLD) -> list[tuple[int, int]]:
    """MinHash LSH over `count` shingle sets: (index, earlier index) pairs at or above the threshold."""
    empty = np.bincount(rows, minlength=count) == 0
    return similar_pairs(signatures(hashes, rows, count), empty, threshold)


def similar_pairs(sig: np.ndarray, empty: np.ndarray, threshold: float = THRESHOLD) -> list[tuple[int, int]]:
    """LSH banding over MinHash signatures (rows with `empty` set are never reported):
    (index, earlier index) pairs whose estimated Jaccard similarity reaches the threshold."""
    if len(sig) < 2:
        return []
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
