"""The inspection worker: inspect one dataset, stream progress and the report as JSON lines, then answer row previews.

What it writes is core/inspect/messages.py's typed messages (the protocol is described there); a request line on
stdin, {"row": n}, asks for one row's preview. The worker ends when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from tunedeck.core.config import DataConfig
from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.loading import open_source
from tunedeck.core.data.placeholders import parse_fill
from tunedeck.core.data.tokenize import IGNORE_INDEX, assistant_spans, encode_conversation
from tunedeck.core.errors import TunedeckError
from tunedeck.core.errors.classify import classify
from tunedeck.core.inspect.inspect import inspect_dataset, source_config
from tunedeck.core.inspect.messages import (
    InspectError,
    InspectMessage,
    Progress,
    RawRow,
    ReportReady,
    RowPreview,
)
from tunedeck.core.jobs.process import quiet_libraries, reserve_stdout
from tunedeck.core.models.loading import load_tokenizer, resolve_model_path
from tunedeck.core.models.templates import TEMPLATES

PROGRESS_EVERY_S = 0.1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tunedeck.core.worker inspect",
                                description="Inspect a dataset and answer row previews over stdin/stdout.")
    p.add_argument("path", help="data file, .md / .txt file, or folder of them")
    p.add_argument("--format", default=None, help="alpaca | sharegpt | openai | markdown | text (default: detect)")
    p.add_argument("--dataset-info", default=None, help="a LLaMA-Factory dataset_info.json")
    p.add_argument("--name", default=None, help="the dataset_info entry")
    p.add_argument("--model", default="builtin:smollm2-135m-instruct", help="whose tokenizer measures the data")
    p.add_argument("--template", default="auto", help="chat template: auto (the tokenizer's) or a named one")
    p.add_argument("--cutoff", type=int, default=DataConfig().cutoff_len, help="data.cutoff_len in tokens")
    p.add_argument("--corpus-mode", default="pretrain", choices=["pretrain", "style_sft"])
    p.add_argument("--chunk-tokens", type=int, nargs=2, default=list(DataConfig().chunk_tokens))
    p.add_argument("--system", default=None, help="data.system_prompt")
    p.add_argument("--fill", action="append", default=[], metavar="NAME=VALUE",
                   help="a value for {{NAME}} placeholders (data.placeholders); repeatable")
    return p


@dataclass
class Rows:
    """What a row request can be answered from: conversations by row, raw rows that failed, and the source."""

    source: str
    corpus: str | None = None  # markdown | text for corpora, whose rows are chunk samples
    conversations: dict[int, Conversation] = field(default_factory=dict)
    raw: dict[int, tuple[Any, str]] = field(default_factory=dict)  # row -> (data, why it is not a conversation)


class Output:
    """JSON lines on the reserved stdout, progress throttled."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._last = 0.0

    def send(self, message: InspectMessage) -> None:
        self.stream.write(json.dumps(message.to_json(), ensure_ascii=False) + "\n")
        self.stream.flush()

    def progress(self, phase: str, done: int = 0, total: int = 0) -> None:
        now = time.monotonic()
        if done < total and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        self.send(Progress(phase, done, total))


def load_tokenizer_for(model: str, template: str) -> Any:
    tokenizer = load_tokenizer(resolve_model_path(model))
    if template != "auto":
        tokenizer.chat_template = TEMPLATES[template].jinja
    return tokenizer


def data_config(args: argparse.Namespace) -> DataConfig:
    return source_config(args.path, args.format, args.dataset_info, args.name, cutoff_len=args.cutoff,
                         corpus_mode=args.corpus_mode, chunk_tokens=list(args.chunk_tokens),
                         system_prompt=args.system, placeholders=parse_fill(args.fill))


def load_rows(cfg: DataConfig, tokenizer: Any) -> Rows:
    """Every row as the viewer shows it (as training reads it), including the ones training would skip."""
    source = open_source(cfg, tokenizer)
    rows = Rows(str(source.path), source.format if source.records is None else None)
    conversations, problems = source.conversations(cfg.placeholders)
    rows.conversations = {c.row: c.with_system(cfg.system_prompt) for c in conversations}
    if source.records is not None:
        by_index = {r.index: r.data for r in source.records.rows}
        rows.raw = {p.row: (by_index.get(p.row), p.message) for p in problems}
    return rows


def row_segments(conv: Conversation, tokenizer: Any, cutoff: int) -> tuple[list[list[Any]], int, int]:
    """The sample as training tokenizes it: [text, trained, past_cutoff] runs, token count, trained tokens kept.

    Uses the training path itself (core/data/tokenize.py): the chat-template rendering, the assistant spans and
    the tokenizer's offsets; pretraining text is trained whole, with the EOS the encoder appends.
    """
    sample = encode_conversation(tokenizer, conv, 1 << 30)  # uncut: the viewer shows what the cutoff drops
    if "text" in conv.meta:
        text = conv.meta["text"] + (tokenizer.eos_token or "")
    else:
        text, _ = assistant_spans(tokenizer, conv)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    starts = [0, *(start for start, _ in offsets[1:]), len(text)]
    runs: list[list[Any]] = []
    for position in range(len(offsets)):
        piece = text[starts[position]:starts[position + 1]]
        trained = position < len(sample.labels) and sample.labels[position] != IGNORE_INDEX
        past = position >= cutoff
        if runs and runs[-1][1] == trained and runs[-1][2] == past:
            runs[-1][0] += piece
        else:
            runs.append([piece, trained, past])
    kept = sum(1 for label in sample.labels[:cutoff] if label != IGNORE_INDEX)
    return runs, sample.full_length, kept


def answer_row(rows: Rows, row: int, tokenizer: Any, cutoff: int) -> RowPreview | RawRow:
    conv = rows.conversations.get(row)
    if conv is None:
        data, problem = rows.raw.get(row, (None, f"no row {row} in {rows.source}"))
        raw = json.dumps(data, ensure_ascii=False, indent=2) if data is not None else ""
        return RawRow(row, raw, problem)
    segments, tokens, trained = row_segments(conv, tokenizer, cutoff)
    where = f"{conv.meta['file']}:{conv.meta['line']}" if "file" in conv.meta else conv.where(rows.source)
    return RowPreview(row, conv.line, where, tokens, trained, cutoff,
                      tuple((text, is_trained, past) for text, is_trained, past in segments), conv.meta.get("task"))


def serve(args: argparse.Namespace, out: Output, requests: IO[str]) -> int:
    out.progress("loading the tokenizer")
    tokenizer = load_tokenizer_for(args.model, args.template)
    out.progress("reading the rows")
    cfg = data_config(args)
    rows = load_rows(cfg, tokenizer)

    def measuring(done: int, total: int) -> None:
        out.progress("measuring", done, total)

    report = inspect_dataset(cfg, template=args.template, tokenizer=tokenizer, progress=measuring)
    out.send(ReportReady(report))
    for line in requests:
        if not line.strip():
            continue
        try:
            row = int(json.loads(line)["row"])
            out.send(answer_row(rows, row, tokenizer, args.cutoff))
        except TunedeckError as exc:
            out.send(InspectError(exc.one_line(), exc.hint, row))
        except (ValueError, KeyError, TypeError) as exc:
            out.send(InspectError(f"bad request {line.strip()!r}: {exc}", row=-1))
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `python -m tunedeck.core.worker inspect`."""
    args = parser().parse_args(argv)
    out = Output(reserve_stdout())
    quiet_libraries()
    try:
        return serve(args, out, sys.stdin)
    except Exception as exc:  # noqa: BLE001 - every failure must reach the screen as one readable line
        import traceback

        traceback.print_exc(file=sys.stderr)
        error = classify(exc)
        hint = "; ".join(error.hints) if error.kind != "crash" else (
            f"the traceback is on stderr: python -m tunedeck.core.worker inspect {args.path}")
        out.send(InspectError(error.message, hint))
        return 2
