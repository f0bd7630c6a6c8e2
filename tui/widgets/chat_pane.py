"""One side of the chat: a model's title and its turns (prompt, streamed answer, speed and JSON badge)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from tunedeck.core.chat.protocol import Done, ErrorReply

FINISH_NOTES = {"length": "cut at max new tokens", "cancelled": "stopped"}


def json_badge(valid: bool | None, error: str | None, constrained: bool) -> Text:
    """'JSON valid' (green) or 'JSON invalid: where' (red); nothing for answers that are not meant as JSON."""
    if valid is None:
        return Text("")
    if valid:
        return Text(" JSON valid " + ("(grammar) " if constrained else ""), style="bold black on green")
    return Text(f" JSON invalid: {error} ", style="bold white on red")


def answer_meta(done: Done) -> Text:
    """The line under an answer: its badge, tokens, tokens/s, time to first token and how it ended."""
    meta = json_badge(done.json_valid, done.json_error, done.constrained)
    if meta.plain:
        meta.append("  ")
    rate = done.tokens_per_s
    parts = [f"{done.tokens} tokens", f"{rate:.1f} tok/s" if rate else "- tok/s"]
    if done.first_token_s is not None:
        parts.append(f"first token {done.first_token_s:.2f}s")
    if done.finish in FINISH_NOTES:
        parts.append(FINISH_NOTES[done.finish])
    meta.append(" · ".join(parts), style="dim")
    return meta


class ChatTurn(Vertical):
    """A prompt and the answer streaming into it."""

    DEFAULT_CSS = """
    ChatTurn { height: auto; margin-bottom: 1; }
    ChatTurn .turn-user { color: $accent; text-style: bold; }
    ChatTurn .turn-answer { padding-left: 2; }
    ChatTurn .turn-meta { padding-left: 2; height: auto; }
    """

    def __init__(self, prompt: str, request_id: str):
        super().__init__()
        self.prompt = prompt
        self.request_id = request_id
        self.text = ""
        self.dirty = False
        self.pieces = 0  # streamed pieces received before the answer finished
        self.done: Done | ErrorReply | None = None  # how the answer ended: finished, or failed
        self.settings: dict[str, Any] = {}  # what it was asked with, for the conversation log

    def compose(self) -> ComposeResult:
        yield Static(Text(f"> {self.prompt}"), classes="turn-user")
        yield Static(Text("…", style="dim"), classes="turn-answer")
        yield Static("", classes="turn-meta")

    def on_mount(self) -> None:
        self.show()  # a quick answer may have come before the turn was on screen

    def append(self, text: str) -> None:
        self.text += text
        self.pieces += 1
        self.dirty = True

    def flush(self) -> bool:
        """Show the text streamed since the last flush; False when nothing changed (or nothing is on screen yet)."""
        if not self.dirty or not self.query(".turn-answer"):
            return False
        self.dirty = False
        self.query_one(".turn-answer", Static).update(Text(self.text))
        return True

    def finish(self, done: Done) -> None:
        self.done = done
        self.text = done.text
        self.dirty = True
        self.show()

    def fail(self, message: str) -> None:
        self.done = ErrorReply(id=self.request_id, message=message)
        self.show()

    def show(self) -> None:
        """The answer and the line under it as they stand (once the turn's widgets exist)."""
        if not self.query(".turn-meta"):
            return
        if isinstance(self.done, ErrorReply):
            self.dirty = False
            self.query_one(".turn-answer", Static).update(Text(self.text or "(no answer)", style="dim"))
            badge = Text(f" error: {self.done.message} ", style="bold white on red")
            self.query_one(".turn-meta", Static).update(badge)
            return
        self.flush()
        if self.done is not None:
            self.query_one(".turn-meta", Static).update(answer_meta(self.done))


class ChatPane(Vertical):
    """A model's column: its title (model, base or fine-tuned, state) over its conversation."""

    DEFAULT_CSS = """
    ChatPane { width: 1fr; height: 1fr; border: round $primary-darken-2; padding: 0 1; }
    ChatPane .pane-title { height: 1; text-style: bold; }
    ChatPane .pane-state { height: 1; color: $text-muted; }
    ChatPane VerticalScroll { height: 1fr; }
    """

    def __init__(self, side: str, id: str | None = None):
        super().__init__(id=id)
        self.side = side
        self.turns: dict[str, ChatTurn] = {}

    def compose(self) -> ComposeResult:
        yield Static(self.side, classes="pane-title")
        yield Static("", classes="pane-state")
        yield VerticalScroll()

    def set_title(self, title: str, state: str = "") -> None:
        self.query_one(".pane-title", Static).update(Text(f"{self.side}: {title}"))
        self.set_state(state)

    def set_state(self, state: str) -> None:
        self.query_one(".pane-state", Static).update(Text(state))

    def add_turn(self, prompt: str, request_id: str) -> ChatTurn:
        turn = ChatTurn(prompt, request_id)
        self.turns[request_id] = turn
        scroll = self.query_one(VerticalScroll)
        scroll.mount(turn)
        scroll.scroll_end(animate=False)
        return turn

    def finish(self, turn: ChatTurn, done: Done) -> None:
        """Show a finished answer with its badge line, scrolled into view."""
        turn.finish(done)
        self.query_one(VerticalScroll).scroll_end(animate=False)

    def clear(self) -> None:
        self.turns.clear()
        self.query_one(VerticalScroll).remove_children()

    def flush(self) -> None:
        if any([turn.flush() for turn in self.turns.values() if turn.done is None]):
            self.query_one(VerticalScroll).scroll_end(animate=False)
