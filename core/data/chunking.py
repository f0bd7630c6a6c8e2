"""Cut a document's paragraphs into chunks of a token range, on paragraph boundaries where the text allows."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tunedeck.core.data.markdown import Paragraph

Counter = Callable[[str], int]
PARAGRAPH = "\n\n"
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？；]+[”’」』）)]*")
_SPACE = re.compile(r"\s*")


@dataclass(slots=True)
class Chunk:
    """A run of whole paragraphs (or pieces of a paragraph too long to keep whole) from one file."""

    parts: list[str]
    file: str          # relative to the corpus root
    lines: list[int]   # the file line each part starts on
    tokens: int        # of `text`, by the counter it was cut with

    @property
    def text(self) -> str:
        return PARAGRAPH.join(self.parts)

    @property
    def line(self) -> int:
        return self.lines[0]


@dataclass(slots=True)
class _Unit:
    text: str
    line: int
    joiner: str  # what joins it to the unit before: a paragraph break, or the space between two sentences


def sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, the whitespace before it): joining them back gives the text again."""
    out: list[tuple[str, str]] = []
    start, joiner = 0, ""
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        space = _SPACE.match(text, end).group()
        out.append((text[start:end], joiner))
        start, joiner = end + len(space), space
    if start < len(text):
        out.append((text[start:], joiner))
    return [(s, j) for s, j in out if s.strip()]


def token_counter(tokenizer) -> Counter:
    """Tokens in a text by the model's tokenizer; without one, an estimate of 4 UTF-8 bytes per token."""
    if tokenizer is None:
        return lambda text: max(1, round(len(text.encode("utf-8")) / 4)) if text else 0
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _join(units: Sequence[_Unit]) -> str:
    return units[0].text + "".join(u.joiner + u.text for u in units[1:]) if units else ""


def _cut_to_fit(unit: _Unit, count: Counter, max_tokens: int) -> list[_Unit]:
    """A sentence too long for any chunk, cut by tokens (at whitespace where there is some)."""
    pieces, text, joiner = [], unit.text, unit.joiner
    while count(text) > max_tokens:
        low, high = 1, len(text) - 1
        while low < high:  # the longest prefix that fits
            mid = (low + high + 1) // 2
            if count(text[:mid]) <= max_tokens:
                low = mid
            else:
                high = mid - 1
        space = text.rfind(" ", 0, low + 1)
        cut = space if space > low // 2 else low
        pieces.append(_Unit(text[:cut], unit.line, joiner))
        joiner = " " if text[cut:cut + 1] == " " else ""
        text = text[cut + len(joiner):]
    pieces.append(_Unit(text, unit.line, joiner))
    return pieces


def _sentence_units(unit: _Unit, count: Counter, max_tokens: int) -> list[_Unit]:
    parts = sentences(unit.text)
    units = [_Unit(s, unit.line, unit.joiner if i == 0 else j) for i, (s, j) in enumerate(parts)]
    return [piece for u in units for piece in _cut_to_fit(u, count, max_tokens)]


def chunk_paragraphs(paras: Sequence[Paragraph], count: Counter, min_tokens: int, max_tokens: int,
                     file: str = "") -> list[Chunk]:
    """Pack one document's paragraphs into chunks of at most max_tokens.

    Paragraphs stay whole unless one does not fit a chunk, or a chunk would otherwise close under min_tokens:
    then the paragraph is cut between sentences (and a sentence longer than a chunk by tokens). The last chunk
    is topped up from the one before when it is short. A chunk stays under min_tokens only when its document is.
    """
    pending = deque(_Unit(p.text, p.line, PARAGRAPH) for p in paras)
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    while pending:
        unit = pending.popleft()
        if count(_join([*current, unit])) <= max_tokens:
            current.append(unit)
            continue
        split = _sentence_units(unit, count, max_tokens)
        too_big = not current and len(split) > 1
        if len(split) > 1 and (too_big or count(_join(current)) < min_tokens):
            pending.extendleft(reversed(split))
            continue
        groups.append(current)
        current = []
        pending.appendleft(unit)
    if current:
        groups.append(current)
    if len(groups) >= 2 and count(_join(groups[-1])) < min_tokens:
        groups[-2:] = _balance(groups[-2], groups[-1], count, min_tokens, max_tokens)
    return [_chunk(group, count, file) for group in groups if group]


def _balance(before: list[_Unit], last: list[_Unit], count: Counter, min_tokens: int,
             max_tokens: int) -> list[list[_Unit]]:
    """Merge a short last chunk into the one before if it fits, else move units over to it."""
    units = [*before, *last]
    if count(_join(units)) <= max_tokens:
        return [units]
    split = len(before)
    while split > 1:
        head, tail = units[: split - 1], units[split - 1:]
        if count(_join(head)) < min_tokens or count(_join(tail)) > max_tokens:
            break
        split -= 1
        if count(_join(tail)) >= min_tokens:
            break
    return [units[:split], units[split:]]


def _chunk(units: list[_Unit], count: Counter, file: str) -> Chunk:
    parts: list[str] = []
    lines: list[int] = []
    for index, unit in enumerate(units):
        if index and unit.joiner != PARAGRAPH:
            parts[-1] += unit.joiner + unit.text
        else:
            parts.append(unit.text)
            lines.append(unit.line)
    return Chunk(parts, file, lines, count(PARAGRAPH.join(parts)))
