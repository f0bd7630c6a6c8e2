"""`data prepare`: normalized JSONL train / validation / test files by a stable hash split, plus stats.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import DataConfig, TrainConfig
from tunedeck.core.data.conversation import Conversation, Message
from tunedeck.core.data.loading import split_fraction, untrainable_reason
from tunedeck.core.data.tokenize import IGNORE_INDEX, encode_conversation
from tunedeck.core.errors import ConfigError
from tunedeck.core.inspect.fast_render import ChatRenderer
from tunedeck.core.inspect.inspect import chat_template_text, load_rows, source_config
from tunedeck.core.inspect.lengths import SampleTokens, TokenCounter, length_findings, measure_sample
from tunedeck.core.inspect.text_checks import fix_encoding, redact, strip_controls

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT = (0.9, 0.05, 0.05)


def parse_split(text: str) -> tuple[float, float, float]:
    """'0.9,0.05,0.05' (train, validation, test; a missing test or validation share is 0) -> ratios summing to 1."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 3 or any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise ConfigError(f"bad split '{text}'", where="--split",
                          hint="give train,validation,test shares that add up to 1, e.g. 0.9,0.05,0.05")
    values += [0.0] * (3 - len(values))
    return values[0], values[1], values[2]


def split_name(conv: Conversation, ratios: tuple[float, float, float], seed: int) -> str:
    """The split a conversation belongs to: decided by a hash of its content and the seed alone, so a row
    stays in its split when other rows are added, removed or reordered."""
    fraction = split_fraction(conv, seed)
    if fraction < ratios[0]:
        return "train"
    return "validation" if fraction < ratios[0] + ratios[1] else "test"


@dataclass
class Prepared:
    """What prepare wrote and why rows were left out; `to_json` is stats.json."""

    source: str
    format: str
    rows: int
    seed: int
    ratios: tuple[float, float, float]
    samples: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    skipped: list[dict[str, Any]] = field(default_factory=list)
    duplicates_dropped: int = 0
    redacted: int = 0
    encoding_fixed: int = 0
    controls_stripped: int = 0
    tokens: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "rows": self.rows, "seed": self.seed,
                "ratios": dict(zip(SPLITS, self.ratios, strict=True)),
                "samples": self.samples, "files": {s: f"{s}.jsonl" for s in SPLITS if self.samples[s]},
                "skipped": len(self.skipped), "skipped_rows": self.skipped[:100],
                "duplicates_dropped": self.duplicates_dropped, "redacted": self.redacted,
                "encoding_fixed": self.encoding_fixed, "controls_stripped": self.controls_stripped,
                "tokens": self.tokens}


def prepare_dataset(path: str | Path | DataConfig, out: str | Path, split: tuple[float, float, float] = DEFAULT_SPLIT,
                    seed: int | None = None, fmt: str | None = None, dataset_info: str | Path | None = None,
                    name: str | None = None, redact_pii: bool = False, fix_text: bool = False,
                    dedupe: bool = False, system_prompt: str | None = None, tokenizer: Any = None,
                    template: str | None = None, cutoff: int | None = None, measure: bool = True) -> Prepared:
    """Write OUT/{train,validation,test}.jsonl (one {"messages": [...], "tools": [...]} per line, or {"text": ...}
    for a corpus's pretraining samples) and OUT/stats.json. Rows training cannot use are left out and listed;
    with a tokenizer (and `measure`), stats.json also holds each split's token lengths as training encodes them.
    `path` may be a DataConfig (its placeholders, system prompt and corpus settings apply); `fix_text` repairs
    mojibake and strips control and invisible characters."""
    cfg = source_config(path, fmt, dataset_info, name)
    system_prompt = system_prompt or cfg.system_prompt
    loaded = load_rows(cfg, tokenizer=tokenizer)
    seed = TrainConfig.model_fields["seed"].default if seed is None else seed
    result = Prepared(loaded.source, loaded.format, loaded.rows, seed, split)
    result.skipped = [{"row": p.row, "line": p.line, "reason": p.message} for p in loaded.problems]
    groups: dict[str, list[Conversation]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    for conv in loaded.conversations:
        reason = untrainable_reason(conv)
        if reason:
            result.skipped.append({"row": conv.row, "line": conv.line, "reason": reason})
            continue
        conv = _clean(conv, result, redact_pii, fix_text).with_system(system_prompt)
        if dedupe:
            key = conv.key() + json.dumps(conv.tools, sort_keys=True)
            if key in seen:
                result.duplicates_dropped += 1
                continue
            seen.add(key)
        groups[split_name(conv, split, seed)].append(conv)
    result.skipped.sort(key=lambda s: s["row"])
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for split_key, convs in groups.items():
        result.samples[split_key] = len(convs)
        target = out / f"{split_key}.jsonl"
        if convs:
            write_atomic(target, "".join(json.dumps(_row(c), ensure_ascii=False) + "\n" for c in convs))
        elif target.exists():
            target.unlink()  # a stale file from an earlier split would be read as this one
    if tokenizer is not None and measure:
        result.tokens = _token_stats(groups, tokenizer, template, cutoff or cfg.cutoff_len)
    write_atomic(out / "stats.json", json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
    return result


def _clean_text(text: str, result: Prepared, redact_pii: bool, fix_text: bool) -> str:
    if fix_text:
        fixed = fix_encoding(text)
        if fixed is not None:
            text = fixed
            result.encoding_fixed += 1
        text, stripped = strip_controls(text)
        result.controls_stripped += stripped
    if redact_pii:
        text, count = redact(text)
        result.redacted += count
    return text


def _clean(conv: Conversation, result: Prepared, redact_pii: bool, fix_text: bool) -> Conversation:
    if not (redact_pii or fix_text):
        return conv
    if "text" in conv.meta:
        return Conversation([], conv.row, conv.line, conv.tools,
                            {**conv.meta, "text": _clean_text(conv.meta["text"], result, redact_pii, fix_text)})
    messages = [Message(m.role, _clean_text(m.content, result, redact_pii, fix_text), m.tool_calls)
                for m in conv.messages]
    return Conversation(messages, conv.row, conv.line, conv.tools, conv.meta)


def _row(conv: Conversation) -> dict[str, Any]:
    if "text" in conv.meta:
        return {"text": conv.meta["text"]}
    row: dict[str, Any] = {"messages": conv.to_chat()}
    if conv.tools:
        row["tools"] = conv.tools
    return row


def _token_stats(groups: dict[str, list[Conversation]], tokenizer: Any, template: str | None,
                 cutoff: int) -> dict[str, Any]:
    template_name, jinja = chat_template_text(tokenizer, template)
    chat = any(conv.messages for convs in groups.values() for conv in convs)
    render = ChatRenderer(tokenizer, jinja) if chat else None
    counter = TokenCounter(tokenizer)
    stats: dict[str, Any] = {"template": template_name}
    for split_key, convs in groups.items():
        if convs:
            where = [(c.row, c.line) for c in convs]
            lengths, _ = length_findings(where, [_measure(counter, render, c, cutoff) for c in convs], cutoff)
            stats[split_key] = lengths.summary() | {"trained": sum(lengths.trained)}
    return stats


def _measure(counter: TokenCounter, render: ChatRenderer | None, conv: Conversation, cutoff: int) -> SampleTokens:
    """A sample's token counts as training encodes it (pretraining text: every token trained)."""
    if render is None or "text" in conv.meta:
        sample = encode_conversation(counter.tokenizer, conv, 1 << 30)
        kept = sum(1 for label in sample.labels[:cutoff] if label != IGNORE_INDEX)
        return SampleTokens(sample.full_length, sample.trained_tokens, kept)
    return measure_sample(counter, render, conv, cutoff)
