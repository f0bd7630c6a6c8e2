"""Markdown / text corpora: clean, chunk on paragraph boundaries to a token range, and turn chunks into samples.

Two kinds of sample come out:
- pretrain: the chunk itself, every token trained. It is a Conversation with no messages and the text in
  meta["text"]; core/data/tokenize.py encodes it without a chat template (BOS as the tokenizer adds it, EOS).
- style_sft: a writing task whose answer is the original chunk, so the model learns the corpus's style:
  'continue' (the user turn holds the opening paragraphs, the answer the rest) and 'expand' (the user turn holds
  an extractive outline, the chunk's headings and the first sentence of each paragraph; the answer the chunk).
  A 'rewrite' task is left out on purpose: without a model the only derivable source text is a mechanically
  flattened copy, and training on that teaches formatting restoration rather than style.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

from tunedeck.core.data.chunking import Chunk, chunk_paragraphs, sentences, token_counter
from tunedeck.core.data.chunking import Counter as ChunkCounter
from tunedeck.core.data.conversation import Conversation, Message
from tunedeck.core.data.markdown import Paragraph, paragraphs
from tunedeck.core.errors import DataError
from tunedeck.core.user_files import read_regular

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".mdx": "markdown", ".txt": "text", ".text": "text"}
CORPUS_FORMATS = ("markdown", "text")
DOCUMENT_LINE_CHARS = 500  # a text file without blank lines whose median line is this long holds a document a line
LINE_DOCUMENTS, PARAGRAPHS, MARKDOWN = "one document per line", "paragraphs", "Markdown"
CONTINUE_PROMPT = "Continue this text in the same style:\n\n{head}"
EXPAND_PROMPT = "Write the full text in the same style, following this outline:\n\n{outline}"


def corpus_format(path: Path, fmt: str = "auto") -> str | None:
    """'markdown' or 'text' when the path is a corpus (a .md / .txt file or a folder), else None."""
    if fmt in CORPUS_FORMATS:
        return fmt
    if fmt != "auto":
        return None
    if path.is_dir():
        kinds = {SUFFIXES[p.suffix.lower()] for p in corpus_files(path)}
        return "text" if kinds == {"text"} else "markdown"
    return SUFFIXES.get(path.suffix.lower())


def corpus_files(path: Path) -> list[Path]:
    """The corpus's files in a stable order: the file itself, or every .md / .txt under a folder (hidden skipped)."""
    if not path.is_dir():
        return [path]
    found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
             and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    return sorted(found, key=lambda p: p.relative_to(path).as_posix())


def _split_for_continue(chunk: Chunk) -> tuple[str, str] | None:
    """The opening (about 40% of the text, at a paragraph or else a sentence boundary) and the rest."""
    parts = chunk.parts
    if len(parts) >= 2:
        total = sum(len(p) for p in parts)
        seen, k = len(parts[0]), 1
        while k < len(parts) - 1 and seen + len(parts[k]) <= 0.4 * total:
            seen += len(parts[k])
            k += 1
        return "\n\n".join(parts[:k]), "\n\n".join(parts[k:])
    pieces = sentences(parts[0])
    if len(pieces) < 2:
        return None
    k = max(1, min(len(pieces) - 1, round(len(pieces) * 0.4)))
    head = pieces[0][0] + "".join(j + s for s, j in pieces[1:k])
    return head, "".join(j + s for s, j in pieces[k:]).lstrip()


def outline(chunk: Chunk, max_items: int = 8, max_words: int = 25) -> str:
    """An extractive outline: headings as they are, and the opening of each other paragraph (its first sentence
    on its first line, at most max_words words); code blocks left out."""
    items: list[str] = []
    for part in chunk.parts:
        first_line = part.split("\n", 1)[0].strip()
        if first_line.startswith("#"):
            items.append(first_line)
        elif not part.startswith(("```", "~~~")):
            pieces = sentences(first_line)
            words = (pieces[0][0] if pieces else first_line).split()
            items.append("- " + " ".join(words[:max_words]) + (" …" if len(words) > max_words else ""))
    return "\n".join(items[:max_items])


def style_sample(chunk: Chunk, task: str, row: int, line: int | None) -> Conversation:
    """One writing task whose answer is the chunk's own text ('continue' falls back to 'expand' when the chunk
    has a single sentence)."""
    meta = {"file": chunk.file, "line": chunk.line, "tokens": chunk.tokens}
    split = _split_for_continue(chunk) if task == "continue" else None
    if split is not None:
        head, rest = split
        messages = [Message("user", CONTINUE_PROMPT.format(head=head)), Message("assistant", rest)]
        return Conversation(messages, row, line, meta={**meta, "task": "continue"})
    messages = [Message("user", EXPAND_PROMPT.format(outline=outline(chunk))), Message("assistant", chunk.text)]
    return Conversation(messages, row, line, meta={**meta, "task": "expand"})


def text_sample(chunk: Chunk, row: int, line: int | None) -> Conversation:
    """A continued-pretraining sample: no messages, the text in meta['text']."""
    return Conversation([], row, line, meta={"text": chunk.text, "file": chunk.file, "line": chunk.line,
                                             "tokens": chunk.tokens})


def is_text_sample(conv: Conversation) -> bool:
    return "text" in conv.meta


def text_documents(raw: str) -> tuple[list[list[Paragraph]], str]:
    """A plain-text file's documents (each a list of paragraphs) and how it was read.

    One document per line, LLaMA-Factory's pretraining text (wiki_demo.txt): no blank line between the lines and
    the median line at least DOCUMENT_LINE_CHARS characters long. Otherwise the file is one document whose
    paragraphs are separated by blank lines.
    """
    paras = paragraphs(raw, markdown=False)
    if len(paras) == 1 and "\n" in paras[0].text:
        lines = paras[0].text.split("\n")
        if median(len(line) for line in lines) >= DOCUMENT_LINE_CHARS:
            return [[Paragraph(line, paras[0].line + i)] for i, line in enumerate(lines)], LINE_DOCUMENTS
    return [paras], PARAGRAPHS


def _layout(kinds: list[str], documents: int) -> str:
    """How the files of a corpus were read, in one phrase: 'one document per line, 20 documents', or counts per
    kind of file."""
    counted = Counter(kinds)
    if len(counted) == 1:
        return f"{kinds[0]}, {documents} documents" if kinds[0] == LINE_DOCUMENTS else kinds[0]
    return ", ".join(f"{kind} ({n} file{'s' if n > 1 else ''})" for kind, n in counted.most_common())


def read_corpus(path: Path, fmt: str, count: ChunkCounter, min_tokens: int, max_tokens: int
                ) -> tuple[list[Chunk], str]:
    """Every file of the corpus cleaned and chunked, in file order (documents never share a chunk); and how the
    files were read (Markdown, paragraphs, one document per line)."""
    files = corpus_files(path)
    if not files:
        raise DataError("no .md or .txt files in the folder", where=str(path),
                        hint="a corpus folder holds Markdown (.md) or text (.txt) files, in subfolders too")
    chunks: list[Chunk] = []
    kinds: list[str] = []
    lines = 0  # documents read one a line
    for file in files:
        data = read_regular(file, DataError, missing="data file not found", hint="check data.path")
        try:
            raw = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise DataError(f"not UTF-8 (byte at offset {exc.start})", where=f"{file}:{line}",
                            hint="re-save the file as UTF-8") from None
        name = file.relative_to(path).as_posix() if path.is_dir() else file.name
        if fmt == "markdown" and SUFFIXES.get(file.suffix.lower(), "markdown") == "markdown":
            documents, kind = [paragraphs(raw, True)], MARKDOWN
        else:
            documents, kind = text_documents(raw)
        kinds.append(kind)
        lines += len(documents) if kind == LINE_DOCUMENTS else 0
        for document in documents:
            chunks += chunk_paragraphs(document, count, min_tokens, max_tokens, name)
    if not chunks:
        raise DataError("the corpus holds no text after cleaning", where=str(path),
                        hint="front matter, HTML and image links are removed; the files need prose")
    return chunks, _layout(kinds, lines)


def corpus_samples(chunks: list[Chunk], mode: str, tasks: Sequence[str], single_file: bool) -> list[Conversation]:
    """Samples in chunk order; style tasks take turns across chunks so each text is the answer once."""
    samples = []
    for row, chunk in enumerate(chunks):
        line = chunk.line if single_file else None
        if mode == "pretrain":
            samples.append(text_sample(chunk, row, line))
        else:
            samples.append(style_sample(chunk, tasks[row % len(tasks)], row, line))
    return samples


def load_corpus(path: Path, fmt: str, cfg: Any, tokenizer: Any | None = None) -> tuple[list[Conversation], str]:
    """A corpus path and a DataConfig (corpus_mode, chunk_tokens, corpus_tasks) to samples, and how the files
    were read."""
    low, high = cfg.chunk_tokens
    chunks, layout = read_corpus(path, fmt, token_counter(tokenizer), low, high)
    return corpus_samples(chunks, cfg.corpus_mode, cfg.corpus_tasks, not path.is_dir()), layout
