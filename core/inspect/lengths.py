"""Token lengths of samples exactly as training sees them (real tokenizer, the run's chat template), fast."""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.tokenize import assistant_spans
from tunedeck.core.inspect.fast_render import ChatRenderer
from tunedeck.core.inspect.report import Finding, LengthStats

# The pre-tokenizer regex of byte-level BPE (GPT-2 and its descendants), as the tokenizers library spells it.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# A space after whitespace: the only place where cutting text at its spaces could split a pre-token.
_SPACE_AFTER_SPACE = re.compile(r"\s ")
_ASCII_SPACE = " \t\n\r\x0b\x0c"
MAX_CACHED = 64  # longer stretches of text are counted each time rather than kept in the cache


@dataclass(slots=True)
class SampleTokens:
    """One sample's token counts: the whole, its assistant (trained) part, and what of that survives the cutoff."""

    length: int
    assistant: int
    trained: int


def _byte_table() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, as str.translate table over latin-1 code points."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in keep]
    mapping = {b: chr(b) for b in keep}
    mapping.update({b: chr(256 + n) for n, b in enumerate(shifted)})
    return mapping


class _PieceLengths(dict):
    """Token count per pre-token, filled by the tokenizer's own BPE model on first sight."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model
        self.table = _byte_table()

    def __missing__(self, piece: str) -> int:
        count = len(self.model.tokenize(piece.encode("utf-8").decode("latin-1").translate(self.table)))
        self[piece] = count
        return count


class _ChunkLengths(dict):
    """Token count of a stretch of text between two spaces (`prefix` + key), counted piece by piece once."""

    def __init__(self, count: Callable[[str], int], prefix: str):
        super().__init__()
        self.count = count
        self.prefix = prefix

    def __missing__(self, chunk: str) -> int:
        count = self.count(self.prefix + chunk)
        if len(chunk) <= MAX_CACHED:
            self[chunk] = count
        return count


class TokenCounter:
    """Exact token counts and token positions of rendered text.

    For byte-level BPE tokenizers (SmolLM2, GPT-2 style) the text is cut the way the tokenizer cuts it
    (added tokens, then the pre-tokenizer regex) and each piece's BPE length is cached, which is exact
    because BPE never merges across pieces. Any other tokenizer, or text the shortcut is unsure about,
    goes through the tokenizer itself with offsets, as training does.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.fast = False
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
        if backend is not None and _byte_level_ok(_spec(backend)):
            import regex

            self.pieces = _PieceLengths(backend.model)
            self.findall = regex.compile(GPT2_PATTERN).findall
            added = sorted({t.content for t in backend.get_added_tokens_decoder().values()}, key=len, reverse=True)
            self.split = re.compile("(" + "|".join(map(re.escape, added)) + ")").split if added else None
            self.heads = _ChunkLengths(self._count_pieces, "")
            self.spaced = _ChunkLengths(self._count_pieces, " ")
            self.fast = True

    def positions(self, text: str, bounds: Sequence[int]) -> tuple[int, list[int]]:
        """The token count of text and, for each character position in bounds (ascending), how many tokens
        start before it."""
        if self.fast:
            found = self._fast_positions(text, bounds)
            if found is not None:
                return found
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = [start for start, _ in encoded["offset_mapping"]]
        return len(encoded["input_ids"]), [bisect_left(starts, b) for b in bounds]

    def _count_pieces(self, text: str) -> int:
        return sum(map(self.pieces.__getitem__, self.findall(text)))

    def _count(self, text: str) -> int:
        """Tokens of a stretch of text without added tokens. A space that follows a non-space always starts a
        new pre-token, so the text is cut at such spaces and each chunk's count is cached."""
        if len(text) <= MAX_CACHED:
            return self.heads[text]  # whole short stretches, such as the template's own text
        if _SPACE_AFTER_SPACE.search(text):
            return self._count_pieces(text)
        chunks = text.split(" ")
        return self.heads[chunks[0]] + sum(map(self.spaced.__getitem__, chunks[1:]))

    def _fast_positions(self, text: str, bounds: Sequence[int]) -> tuple[int, list[int]] | None:
        parts = self.split(text) if self.split else [text]
        marks: list[int] = []
        pos = tokens = index = 0
        for number, part in enumerate(parts):
            if number % 2:  # an added token: one token
                while index < len(bounds) and bounds[index] <= pos:
                    marks.append(tokens)
                    index += 1
                tokens += 1
                pos += len(part)
                continue
            if not part:
                continue
            end = pos + len(part)
            cursor = 0
            while index < len(bounds) and bounds[index] < end:
                cut = bounds[index] - pos
                if cut and not _clean_cut(part, cut):
                    return None  # the boundary may fall inside a pre-token: let the tokenizer decide
                tokens += self._count(part[cursor:cut]) if cut > cursor else 0
                marks.append(tokens)
                cursor = cut
                index += 1
            tokens += self._count(part[cursor:]) if cursor < len(part) else 0
            pos = end
        marks.extend([tokens] * (len(bounds) - index))
        return tokens, marks


def _clean_cut(text: str, at: int) -> bool:
    """True when position `at` of text is a pre-token boundary and both sides tokenize alone as they do
    together: after a non-space before an ASCII space character, or after a lone line break / tab before a
    non-space (a longer run of whitespace pre-tokenizes differently when cut off)."""
    before, after = text[at - 1], text[at]
    if not before.isspace():
        return after in _ASCII_SPACE
    lone = at == 1 or not text[at - 2].isspace()
    return lone and before in _ASCII_SPACE and before != " " and not after.isspace()


def _spec(backend: Any) -> dict[str, Any]:
    """The parts of a tokenizers.Tokenizer's JSON description that decide whether the shortcut is exact."""
    def part(component: Any) -> Any:
        return json.loads(component.__getstate__()) if component is not None else None

    added = [{"lstrip": t.lstrip, "rstrip": t.rstrip, "single_word": t.single_word}
             for t in backend.get_added_tokens_decoder().values()]
    model = json.loads(backend.model.__getstate__()) if type(backend.model).__name__ != "BPE" else {
        "type": "BPE", "dropout": backend.model.dropout}
    return {"normalizer": part(backend.normalizer), "pre_tokenizer": part(backend.pre_tokenizer), "model": model,
            "post_processor": part(backend.post_processor), "added_tokens": added}


def _byte_level_ok(spec: dict[str, Any]) -> bool:
    """True when the tokenizer is plain byte-level BPE that the piece cache reproduces exactly."""
    pre = spec.get("pre_tokenizer") or {}
    model = spec.get("model") or {}
    post = spec.get("post_processor") or {}
    trims = post.get("type") == "ByteLevel" and post.get("trim_offsets", False)
    plain_added = all(not (t.get("lstrip") or t.get("rstrip") or t.get("single_word"))
                      for t in spec.get("added_tokens", []))
    return (spec.get("normalizer") is None and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False) and model.get("type") == "BPE" and not model.get("dropout")
            and not trims and post.get("type") != "Sequence" and plain_added)


def measure_sample(counter: TokenCounter, render: ChatRenderer, conv: Conversation, cutoff: int) -> SampleTokens:
    text, spans = assistant_spans(counter.tokenizer, conv, render)
    length, marks = counter.positions(text, [b for span in spans for b in span])
    assistant = trained = 0
    for start, end in zip(marks[::2], marks[1::2], strict=True):
        assistant += end - start
        trained += min(end, cutoff) - min(start, cutoff)
    return SampleTokens(length, assistant, trained)


def measure(tokenizer: Any, conversations: Sequence[Conversation], cutoff: int,
            tick: Callable[[int], None] | None = None, render: ChatRenderer | None = None) -> list[SampleTokens]:
    """Token counts of every conversation; `tick(n)` is called after each block of rows (progress, cancel)."""
    counter = TokenCounter(tokenizer)
    render = render or ChatRenderer(tokenizer)
    out: list[SampleTokens] = []
    for number, conv in enumerate(conversations, start=1):
        out.append(measure_sample(counter, render, conv, cutoff))
        if tick is not None and number % 2048 == 0:
            tick(2048)
    if tick is not None:
        tick(len(conversations) % 2048)
    return out


def length_findings(where: Sequence[tuple[int, int | None]], samples: Sequence[SampleTokens],
                    cutoff: int) -> tuple[LengthStats, list[Finding]]:
    """Length statistics and the truncated / assistant_lost findings; `where` is each sample's (row, line)."""
    findings: list[Finding] = []
    over = lost = 0
    for (row, line), sample in zip(where, samples, strict=True):
        if sample.length <= cutoff:
            continue
        over += 1
        if sample.assistant and not sample.trained:
            lost += 1
            findings.append(Finding("assistant_lost", "error", row, line,
                                    f"{sample.length} tokens: every assistant token is past the cutoff of {cutoff}, "
                                    "training drops this sample",
                                    fix="shorten the prompt or raise --cutoff"))
        else:
            kept = f"{sample.trained} of {sample.assistant}" if sample.assistant else "no"
            findings.append(Finding("truncated", "warning", row, line,
                                    f"{sample.length} tokens, longer than the cutoff of {cutoff}: "
                                    f"{sample.length - cutoff} cut away, {kept} assistant tokens kept",
                                    fix=f"raise --cutoff to {sample.length} or shorten the sample"))
    stats = LengthStats([s.length for s in samples], [s.trained for s in samples], cutoff, over, lost,
                        [row for row, _ in where], [s.assistant for s in samples])
    return stats, findings
