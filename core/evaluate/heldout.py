"""The held-out rows of a run: a given file, else the run's validation file, else its validation split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunedeck.core.config import Config
from tunedeck.core.data.conversation import Conversation
from tunedeck.core.data.loading import load_data, load_val_data, split_train_val
from tunedeck.core.data.tool_format import calls_text
from tunedeck.core.errors import DataError


@dataclass
class HeldOutRow:
    """One conversation to answer: the messages before its last answer, and that answer as the reference.
    Pretraining text (a corpus chunk) is continued instead: `text_prompt` holds its opening, the reference the rest."""

    conversation: Conversation
    prompt: list[dict[str, Any]]
    reference: str
    text_prompt: str | None = None

    @property
    def question(self) -> str:
        """The last user message (or the text to continue): what a person reading the predictions wants to see."""
        if self.text_prompt is not None:
            return self.text_prompt
        users = [m["content"] for m in self.prompt if m["role"] == "user"]
        return users[-1] if users else ""


def as_held_out(conv: Conversation) -> HeldOutRow:
    """The reference of an answer with tool calls is its text and each call as a JSON line (the fallback form);
    pretraining text is cut at the space nearest its middle: the opening is the prompt, the rest the reference."""
    if "text" in conv.meta:
        text = conv.meta["text"]
        cut = text.rfind(" ", 0, len(text) // 2 + 1)
        cut = cut if cut > 0 else len(text) // 2
        return HeldOutRow(conv, [], text[cut:], text[:cut])
    last = max(i for i, m in enumerate(conv.messages) if m.role == "assistant")
    answer = conv.messages[last]
    reference = calls_text(answer.content, answer.tool_calls) if answer.tool_calls else answer.content
    return HeldOutRow(conv, [m.to_chat() for m in conv.messages[:last]], reference)


def load_held_out(config: Config, data: str | None = None, max_rows: int | None = None,
                  tokenizer: Any = None) -> tuple[str, list[HeldOutRow]]:
    """(where the rows come from, the rows). A file given here is read with the run's data format. The run's
    tokenizer cuts a Markdown / text corpus into the chunks training made (without one, sizes are estimated)."""
    if data:
        loaded = load_val_data(config.data.model_copy(update={"val_path": data}), tokenizer)
        source, rows = f"file {loaded.source}", loaded.conversations
    elif config.data.val_path:
        loaded = load_val_data(config.data, tokenizer)
        source, rows = f"validation file {loaded.source}", loaded.conversations
    else:
        loaded = load_data(config.data, tokenizer)
        _, rows = split_train_val(loaded.conversations, config.data.val_size, config.train.seed)
        if not rows:
            raise DataError("the run has no held-out rows (data.val_size is 0 and no data.val_path)",
                            where=loaded.source,
                            hint="pass --data FILE with rows the run did not train on")
        source = (f"validation split of {loaded.source} ({len(rows)} of {len(loaded.conversations)} rows, "
                  f"data.val_size={config.data.val_size})")
    if max_rows:
        rows = rows[:max_rows]
    return source, [as_held_out(c) for c in rows]
