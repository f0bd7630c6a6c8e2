"""The chat pane's dialogs: pick a model for a side, the prompt library, and the generation settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tunedeck.core.chat.protocol import Settings
from tunedeck.core.chat.store import PromptLibrary
from tunedeck.tui.chat_client import ChatTarget


@dataclass(frozen=True)
class ModelChoice:
    label: str  # what the pane calls it: fine-tuned, base, checkpoint 20, GGUF Q4_K_M, ...
    target: ChatTarget
    adapter: bool = True


def run_choices(run: Path) -> list[ModelChoice]:
    """Everything a run can answer with: its adapter on and off, its checkpoints, its exports."""
    choices = [ModelChoice("fine-tuned", ChatTarget(str(run))), ModelChoice("base", ChatTarget(str(run)), False)]
    steps = sorted((int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*")
                    if p.name.split("-")[1].isdigit()), reverse=True)
    choices += [ModelChoice(f"checkpoint {s}", ChatTarget(str(run), checkpoint=str(s))) for s in steps]
    if (run / "export" / "merged" / "config.json").is_file():
        choices.append(ModelChoice("merged export", ChatTarget(str(run), backend="merged")))
    for gguf in sorted((run / "export").glob("*.gguf")):
        quant = gguf.stem.rsplit("-", 1)[-1]
        choices.append(ModelChoice(f"GGUF {quant}", ChatTarget(str(run), backend="gguf", quant=quant)))
    return choices


class ModelPicker(ModalScreen[ModelChoice | None]):
    """A run's models in a list, or any model folder or .gguf file typed as a path."""

    CSS_PATH = "chat.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, side: str, choices: list[ModelChoice]):
        super().__init__()
        self.side = side
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="chat-dialog"):
            yield Static(f"Model for side {self.side}", classes="dialog-title")
            yield OptionList(*[Option(c.label, id=str(i)) for i, c in enumerate(self.choices)], id="model-list")
            yield Label("or a model folder / .gguf file / run folder:")
            yield Input(placeholder="/path/to/model.gguf", id="model-path")
        yield Footer()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id)])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if not path:
            return
        if not Path(path).expanduser().exists():
            self.notify(f"{path}: no such file or folder", severity="error")
            return
        self.dismiss(ModelChoice(Path(path).name, ChatTarget(str(Path(path).expanduser().resolve()))))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PromptLibraryScreen(ModalScreen[list[dict[str, Any]] | None]):
    """Saved prompts of this run: replay one (enter) or all (a), save the prompt being typed (s), delete (d)."""

    CSS_PATH = "chat.tcss"
    BINDINGS = [Binding("enter", "replay", "Replay", priority=True), Binding("a", "replay_all", "Replay all"),
                Binding("s", "save", "Save current"), Binding("d", "delete", "Delete"),
                Binding("escape", "cancel", "Close")]

    def __init__(self, library: PromptLibrary, current: str, json_mode: bool, system: str | None):
        super().__init__()
        self.library = library
        self.current = current
        self.json_mode = json_mode
        self.system = system
        self.prompts: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="chat-dialog"):
            yield Static(f"Prompt library ({self.library.path})", classes="dialog-title")
            yield OptionList(id="prompt-list")
            yield Static("", id="prompt-hint")
        yield Footer()

    def on_mount(self) -> None:
        try:
            self.show(self.library.load())
        except ValueError as exc:
            self.notify(str(exc), severity="error")

    def show(self, prompts: list[dict[str, Any]]) -> None:
        self.prompts = prompts
        options = self.query_one(OptionList)
        options.clear_options()
        for prompt in prompts:
            label = Text(prompt["prompt"].replace("\n", " ")[:100])
            if prompt.get("json_mode"):
                label.append("  [JSON]", style="bold green")
            options.add_option(Option(label))
        hint = "" if prompts else "No saved prompts: type one in the prompt box, press esc then p, then s."
        self.query_one("#prompt-hint", Static).update(hint)
        if prompts:
            options.highlighted = len(prompts) - 1
        options.focus()

    def action_save(self) -> None:
        if not self.current.strip():
            self.notify("the prompt box is empty: type a prompt first", severity="warning")
            return
        self.show(self.library.add(self.current.strip(), self.json_mode, self.system))
        self.notify("prompt saved")

    def action_delete(self) -> None:
        index = self.query_one(OptionList).highlighted
        if index is not None:
            self.show(self.library.remove(index))

    def action_replay(self) -> None:
        index = self.query_one(OptionList).highlighted
        if index is not None and self.prompts:
            self.dismiss([self.prompts[index]])

    def action_replay_all(self) -> None:
        if self.prompts:
            self.dismiss(list(self.prompts))

    def action_cancel(self) -> None:
        self.dismiss(None)


SETTING_FIELDS = [("system", "System prompt"), ("temperature", "Temperature (0: greedy)"), ("top_p", "Top p"),
                  ("top_k", "Top k (0: off)"), ("repetition_penalty", "Repetition penalty"),
                  ("max_new_tokens", "Max new tokens"), ("stop", "Stop strings (separated by |)")]


class SettingsScreen(ModalScreen[Settings | None]):
    """The generation settings as a small form; enter applies them, escape leaves them as they were."""

    CSS_PATH = "chat.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        values = self.settings.to_dict()
        with Vertical(classes="chat-dialog"):
            yield Static("Generation settings (enter applies)", classes="dialog-title")
            for name, label in SETTING_FIELDS:
                value = values[name]
                text = "|".join(value) if name == "stop" else "" if value is None else str(value)
                yield Label(label)
                yield Input(value=text, id=f"set-{name}")
        yield Footer()

    def on_input_submitted(self) -> None:
        data: dict[str, Any] = {"json_mode": self.settings.json_mode}
        try:
            for name, _ in SETTING_FIELDS:
                data[name] = self._parse(name, self.query_one(f"#set-{name}", Input).value)
            self.dismiss(Settings.from_dict(data))
        except (ValueError, TypeError) as exc:
            self.notify(str(exc), title="settings not applied", severity="error")

    @staticmethod
    def _parse(name: str, raw: str) -> Any:
        if name == "system":
            return raw.strip() or None
        if name == "stop":
            return [s for s in raw.split("|") if s]
        whole = name in ("top_k", "max_new_tokens")
        try:
            return int(raw) if whole else float(raw)
        except ValueError:
            raise ValueError(f"{name} must be {'a whole number' if whole else 'a number'}, not {raw!r}") from None

    def action_cancel(self) -> None:
        self.dismiss(None)
