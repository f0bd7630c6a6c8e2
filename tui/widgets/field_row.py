"""One config field in a form: the input for its type, its help (description, bounds, advice) and its error."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, Switch

from tunedeck.core.config_fields import FieldSpec, text_value, value_text


def help_text(spec: FieldSpec, advice: str | None) -> str:
    parts = [spec.description]
    if spec.bounds:
        parts.append(f"[{spec.bounds}]")
    if spec.optional:
        parts.append("(empty: not set)")
    text = " ".join(parts)
    if advice:
        text += f"\npreset advice: {advice}"
    return text


class FieldRow(Vertical):
    """A labelled input; posts FieldRow.Changed whenever the user edits it."""

    DEFAULT_CSS = """
    FieldRow {
        height: auto;
        padding: 0 1;
        margin-bottom: 1;
    }
    FieldRow .field-line {
        height: auto;
    }
    FieldRow .field-key {
        width: 34;
    }
    FieldRow Switch {
        border: none;
        height: 1;
        padding: 0;
    }
    FieldRow Input, FieldRow Select {
        width: 1fr;
    }
    FieldRow .field-help {
        color: $text-muted;
        padding-left: 34;
    }
    FieldRow .field-error {
        color: $error;
        padding-left: 34;
        display: none;
    }
    FieldRow.-invalid .field-error {
        display: block;
    }
    FieldRow.-invalid .field-key {
        color: $error;
    }
    """

    class Changed(Message):
        def __init__(self, row: FieldRow):
            super().__init__()
            self.row = row

    def __init__(self, spec: FieldSpec, value: Any, advice: str | None = None):
        super().__init__(id=f"field-{spec.key.replace('.', '-')}")
        self.spec = spec
        self.initial = value
        self.advice = advice
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        spec = self.spec
        with Horizontal(classes="field-line"):
            yield Label(spec.key, classes="field-key")
            if spec.kind == "bool":
                yield Switch(value=bool(self.initial))
            elif spec.kind == "choice":
                yield Select([(str(c), c) for c in spec.choices], value=self.initial, allow_blank=False, compact=True)
            else:
                yield Input(value=value_text(self.initial), placeholder="not set" if spec.optional else "",
                            compact=True)
        yield Static(help_text(spec, self.advice), classes="field-help")
        yield Static("", classes="field-error")

    def value(self) -> Any:
        """The value as the config should receive it."""
        if self.spec.kind == "bool":
            return self.query_one(Switch).value
        if self.spec.kind == "choice":
            return self.query_one(Select).value
        return text_value(self.spec, self.query_one(Input).value)

    def show_error(self, message: str | None) -> None:
        self.error = message
        self.set_class(bool(message), "-invalid")
        self.query_one(".field-error", Static).update(f"refused: {message}" if message else "")

    def focus_input(self) -> None:
        self.query_one(".field-line").children[1].focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))
