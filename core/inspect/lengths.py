"""Token lengths of samples exactly as training sees them (real tokenizer, the run's chat template), fast."""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.tokenize import assistant_spans
from tunedeck.core.errors import DataError
from tunedeck.core.inspect.report import Finding, LengthStats

# The pre-tokenizer regex of byte-level BPE (GPT-2 and its descendants), as the tokenizers library spells it.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@dataclass(slots=True)
class SampleTokens:
    """One sample's token counts: the whole, its assistant (trained) part, and what of that survives the cutoff."""

    length: int
    assistant: int
    trained: int


class ChatRenderer:
    """apply_chat_template(tokenize=False) without its per-call overhead: the same compiled jinja template and
    the same variables (the tokenizer's special tokens), rendered directly."""

    def __init__(self, tokenizer: Any, chat_template: str | None = None):
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        if not self.chat_template:
            raise DataError("the tokenizer has no chat template", where="--template",
                            hint="pass --template chatml, qwen or llama3 to match how the model was trained")
        self.tokenizer = tokenizer
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template

            self.template = _compile_jinja_template(self.chat_template)
            self.variables = dict(tokenizer.special_tokens_map)
        except Exception:  # noqa: BLE001 - another transformers layout: use the public call
            self.template = None

    def __call__(self, messages: list[dict], tools: Any, generation_prompt: bool) -> str:
        if self.template is None:
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                      add_generation_prompt=generation_prompt,
                                                      chat_template=self.chat_template)
        return self.template.render(messages=messages, tools=tools, documents=None,
                                    add_generation_prompt=generation_prompt, **self.variables)


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
        if backend is not None and _byte_level_ok(json.loads(backend.to_str())):
            import regex

            self.pieces = _PieceLengths(backend.model)
            self.findall = regex.compile(GPT2_PATTERN).findall
            added = sorted({t.content for t in backend.get_added_tokens_decoder().values()}, key=len, reverse=True)
            self.split = re.compile("(" + "|".join(map(re.escape, added)) + ")").split if added else None
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

    def _fast_positions(self, text: str, bounds: Sequence[int]) -> tuple[int, list[int]] | None:
        parts = self.split(text) if self.split else [text]
        get = self.pieces.__getitem__
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
            words = self.findall(part)
            if index < len(bounds) and bounds[index] < end:
                starts = list(accumulate(map(len, words), initial=0))
                counts = list(accumulate(map(get, words), initial=0))
                while index < len(bounds) and bounds[index] < end:
                    at = bisect_left(starts, bounds[index] - pos)
                    if starts[at] != bounds[index] - pos:
                        return None  # the boundary falls inside a piece: let the tokenizer decide
                    marks.append(tokens + counts[at])
                    index += 1
                tokens += counts[-1]
            else:
                tokens += sum(map(get, words))
            pos = end
        marks.extend([tokens] * (len(bounds) - index))
        return tokens, marks


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


def length_findings(conversations: Sequence[Conversation], samples: Sequence[SampleTokens],
                    cutoff: int) -> tuple[LengthStats, list[Finding]]:
    findings: list[Finding] = []
    over = lost = 0
    for conv, sample in zip(conversations, samples, strict=True):
        if sample.length <= cutoff:
            continue
        over += 1
        if sample.assistant and not sample.trained:
            lost += 1
            findings.append(Finding("assistant_lost", "error", conv.row, conv.line,
                                    f"{sample.length} tokens: every assistant token is past the cutoff of {cutoff}, "
                                    "training drops this sample",
                                    fix="shorten the prompt or raise --cutoff"))
        else:
            kept = f"{sample.trained} of {sample.assistant}" if sample.assistant else "no"
            findings.append(Finding("truncated", "warning", conv.row, conv.line,
                                    f"{sample.length} tokens, longer than the cutoff of {cutoff}: "
                                    f"{sample.length - cutoff} cut away, {kept} assistant tokens kept",
                                    fix=f"raise --cutoff to {sample.length} or shorten the sample"))
    stats = LengthStats([s.length for s in samples], [s.trained for s in samples], cutoff, over, lost,
                        [c.row for c in conversations])
    return stats, findings
