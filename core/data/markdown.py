"""Clean Markdown or plain text into paragraphs of prose, each with the file line it starts on."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_FRONT_MATTER = re.compile(r"\A(?:---|\+\+\+)[ \t]*\n.*?\n(?:---|\.\.\.|\+\+\+)[ \t]*(?:\n|\Z)", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_FENCE = re.compile(r"^[ ]{0,3}(```+|~~~+)")
_IMAGE = re.compile(r"!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\])")
_LINK = re.compile(r"\[([^\]]+)\](?:\((?:[^()]|\([^)]*\))*\)|\[[^\]]*\])")
_AUTOLINK = re.compile(r"<((?:https?|mailto|ftp):[^>\s]+)>")
_REFERENCE_DEF = re.compile(r"^[ ]{0,3}\[[^\]]+\]:\s*\S+.*$")
_BREAK_TAG = re.compile(r"<br\s*/?>", re.I)
_HTML_TAGS = ("a abbr address article aside audio b bdi bdo big blockquote body br button caption center cite code col "
              "colgroup dd del details dfn div dl dt em embed figcaption figure font footer form h1 h2 h3 h4 h5 h6 "
              "head header hr html i iframe img input ins kbd label li main mark meta nav object ol p picture pre q "
              "s samp section small source span strike strong sub summary sup table tbody td tfoot th thead time "
              "tr tt u ul var video wbr").split()
# Only real HTML tags: placeholders such as <run-id> or <name> are text.
_TAG = re.compile(r"</?(?:" + "|".join(_HTML_TAGS) + r")(?:\s[^<>]*)?/?>", re.I)
_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.S | re.I)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_SPACE_BEFORE_STOP = re.compile(r" +([.,;:!?])(?=\s|$)")  # left behind where an image was removed


@dataclass(slots=True)
class Paragraph:
    """One block of cleaned text (a heading, a paragraph, a list, a code block) and its first line in the file."""

    text: str
    line: int


def _blank_out(match: re.Match[str]) -> str:
    """Removed text keeps its newlines, so the lines after it keep their numbers."""
    return "\n" * match.group(0).count("\n")


def _hold_lines(match: re.Match[str]) -> str:
    """Like _blank_out, but the lines stay non-blank (a NUL each), so a comment inside a paragraph does not split
    it; clean_inline drops them."""
    return "\n".join(["\x00"] * (match.group(0).count("\n") + 1))


def clean_inline(text: str, markdown: bool = True) -> str:
    """One block without markup noise: images dropped, links reduced to their text, HTML tags removed."""
    text = text.replace("\x00", "")
    if markdown:
        spans: list[str] = []  # inline code is kept verbatim: held aside while the markup is removed

        def hold(match: re.Match[str]) -> str:
            spans.append(match.group(0))
            return f"\x01{len(spans) - 1}\x01"

        text = _CODE_SPAN.sub(hold, text)
        text = _IMAGE.sub("", text)
        text = _LINK.sub(r"\1", text)
        text = _AUTOLINK.sub(r"\1", text)
        text = _BREAK_TAG.sub("\n", text)
        text = _TAG.sub("", text)
        text = html.unescape(text)
        text = re.sub("\x01(\\d+)\x01", lambda m: spans[int(m.group(1))], text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    if markdown:
        lines = [_SPACE_BEFORE_STOP.sub(r"\1", line) for line in lines if line and not _REFERENCE_DEF.match(line)]
    return "\n".join(line for line in lines if line)


def _blocks(text: str) -> list[tuple[list[str], int, bool]]:
    """Split into blank-line separated blocks (fenced code kept whole): (lines, first line number, is_code)."""
    blocks: list[tuple[list[str], int, bool]] = []
    current: list[str] = []
    start = 0
    fence: str | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        opening = _FENCE.match(line)
        if fence is not None:
            current.append(line)
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                blocks.append((current, start, True))
                current, fence = [], None
            continue
        if opening:
            if current:
                blocks.append((current, start, False))
            current, start, fence = [line], number, opening.group(1)
        elif line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            blocks.append((current, start, False))
            current = []
    if current:
        blocks.append((current, start, fence is not None))
    return blocks


def paragraphs(text: str, markdown: bool = True) -> list[Paragraph]:
    """The cleaned paragraphs of a document: front matter and HTML comments gone, whitespace normalized.

    Headings stay as Markdown headings (their text is part of the style); fenced code blocks are kept verbatim.
    Plain text (markdown=False) only gets its whitespace normalized.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    if markdown:
        text = _FRONT_MATTER.sub(_blank_out, text, count=1)
        text = _HTML_COMMENT.sub(_hold_lines, text)
        text = _SCRIPT_STYLE.sub(_hold_lines, text)
    out: list[Paragraph] = []
    for lines, line, is_code in _blocks(text):
        cleaned = "\n".join(lines).strip("\n") if is_code and markdown else clean_inline("\n".join(lines), markdown)
        if cleaned.strip():
            out.append(Paragraph(cleaned, line))
    return out


def clean_markdown(text: str) -> str:
    """A Markdown document as clean text: its paragraphs separated by one blank line."""
    return "\n\n".join(p.text for p in paragraphs(text))
