"""The chat pane: talk to a run's model, alone or side by side with another (base, a checkpoint, a GGUF)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from tunedeck.core.chat.protocol import ChatReply, Done, ErrorReply, Ready, Settings, Token, WorkerExit
from tunedeck.core.chat.resolve import ChatModel
from tunedeck.core.chat.store import ConversationLog, PromptLibrary, eval_dir
from tunedeck.tui.chat_client import ChatClient, ChatTarget, ClientFactory
from tunedeck.tui.screens.chat_dialogs import ModelChoice, ModelPicker, PromptLibraryScreen, SettingsScreen, run_choices
from tunedeck.tui.widgets.chat_pane import ChatPane

FLUSH_S = 0.05  # streamed text reaches the screen at most 20 times a second
BACKEND_NAMES = {"adapter": "HF + LoRA", "hf": "HF", "gguf": "GGUF"}


@dataclass
class Side:
    """What one pane talks to, and its conversation so far."""

    choice: ModelChoice | None
    history: list[dict[str, str]] = field(default_factory=list)
    model: ChatModel | None = None  # what the worker loaded, once it is ready


class WorkerReply(Message):
    """A typed reply from a chat worker, posted from the client's reader thread."""

    def __init__(self, target: ChatTarget, reply: ChatReply):
        super().__init__()
        self.target = target
        self.reply = reply


class ChatScreen(Screen[None]):
    CSS_PATH = "chat.tcss"
    BINDINGS = [
        Binding("enter", "send", "Send"),
        Binding("escape", "back", "Leave box / Back"),
        Binding("s", "side_by_side", "Side by side"),
        Binding("j", "json_mode", "JSON mode"),
        Binding("p", "prompts", "Prompts"),
        Binding("m", "pick_a", "Model A"),
        Binding("b", "pick_b", "Model B"),
        Binding("o", "settings", "Settings"),
        Binding("x", "new_chat", "New chat"),
        Binding("ctrl+t", "stop_answer", "Stop answer", priority=True),
    ]

    def __init__(self, target: ChatTarget, factory: ClientFactory, run: Path | None = None, title: str = ""):
        super().__init__()
        self.factory = factory
        self.run = run
        self.title_text = title or Path(target.model).name
        self.settings = Settings()
        self.side_by_side = False
        self.sides = {"A": Side(ModelChoice("fine-tuned" if run else Path(target.model).name, target)),
                      "B": Side(ModelChoice("base", target, adapter=False) if run else None)}
        self.clients: dict[ChatTarget, ChatClient] = {}
        self.requests: dict[str, tuple[str, bool]] = {}  # request id -> (side, standalone)
        self.counter = itertools.count(1)
        self.load_failed: set[ChatTarget] = set()
        folder = eval_dir(run, target.model)
        self.conversation = ConversationLog(folder)
        self.library = PromptLibrary(folder)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Chat with {self.title_text}", id="chat-title")
        with Horizontal(id="chat-panes"):
            yield ChatPane("A", id="pane-A")
            yield ChatPane("B", id="pane-B")
        yield Static("", id="chat-status")
        yield Input(placeholder="Ask something; enter sends, esc leaves the box for the keys below",
                    id="chat-prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#pane-B").display = False
        self.connect("A")
        self.show_status()
        self.query_one("#chat-prompt", Input).focus()
        self.set_interval(FLUSH_S, self.flush)

    def on_unmount(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()

    # -- workers -----------------------------------------------------------------------------------------

    def pane(self, side: str) -> ChatPane:
        return self.query_one(f"#pane-{side}", ChatPane)

    def connect(self, side: str) -> None:
        """Give a side its worker: the one already holding its model, or a new one."""
        choice = self.sides[side].choice
        pane = self.pane(side)
        if choice is None:
            pane.set_title("no model", "press b to pick one")
            return
        model = self.ready_model(choice.target)
        pane.set_title(self.side_title(choice, model), "ready" if model else "loading the model…")
        if choice.target not in self.clients:
            target = choice.target
            try:
                self.clients[target] = self.factory(
                    target, lambda reply: self.post_message(WorkerReply(target, reply)))
            except OSError as exc:
                pane.set_state(f"could not start the chat worker: {exc.strerror or exc}")
                self.notify(f"could not start the chat worker: {exc}", title="chat", severity="error")

    def ready_model(self, target: ChatTarget) -> ChatModel | None:
        return next((s.model for s in self.sides.values() if s.choice and s.choice.target == target and s.model),
                    None)

    @staticmethod
    def side_title(choice: ModelChoice, model: ChatModel | None) -> str:
        if model is None:
            return f"{choice.label} · {Path(choice.target.model).name}"
        how = BACKEND_NAMES.get(model.backend, model.backend)
        if model.backend == "adapter" and not choice.adapter:
            how = "HF, LoRA off"
        elif model.backend == "gguf" and not choice.adapter:
            how = "GGUF of the base"
        return f"{choice.label} · {model.label} ({how})"

    def release_unused(self) -> None:
        used = {s.choice.target for s in self.sides.values() if s.choice}
        for target in [t for t in self.clients if t not in used]:
            self.clients.pop(target).close()

    def on_worker_reply(self, message: WorkerReply) -> None:
        reply = message.reply
        if isinstance(reply, Ready):
            self.model_ready(message.target, reply.model)
        elif isinstance(reply, Token):
            turn = self.turn(reply.id)
            if turn is not None:
                turn.append(reply.text)
        elif isinstance(reply, Done):
            self.answered(reply)
        elif isinstance(reply, ErrorReply):
            self.failed(message.target, reply)
        elif isinstance(reply, WorkerExit):
            self.clients.pop(message.target, None)
            if message.target in self.load_failed:  # already said why: the model did not load
                self.load_failed.discard(message.target)
                return
            self.fail_pending(message.target, "the chat worker ended")
            for side in self.sides_of(message.target):
                self.sides[side].model = None
                self.pane(side).set_state(f"worker ended (exit code {reply.code}); send again to restart it")
            self.notify(reply.message or "the chat worker ended", title="chat worker ended",
                        severity="error", timeout=10)

    def sides_of(self, target: ChatTarget) -> list[str]:
        return [name for name, s in self.sides.items() if s.choice and s.choice.target == target]

    def model_ready(self, target: ChatTarget, model: ChatModel) -> None:
        for name in self.sides_of(target):
            side = self.sides[name]
            side.model = model
            if not side.choice.adapter and not model.has_base:
                self.pane(name).set_title(self.side_title(side.choice, model),
                                          "this model cannot answer as its base: press b to pick another")
            else:
                self.pane(name).set_title(self.side_title(side.choice, model), "ready")

    def failed(self, target: ChatTarget, reply: ErrorReply, quiet: bool = False) -> None:
        message = reply.message
        turn = self.turn(reply.id)
        if turn is not None:
            side, standalone = self.requests.pop(turn.request_id)
            turn.fail(message)
            if not standalone and self.sides[side].history:
                self.sides[side].history.pop()  # the unanswered prompt leaves the conversation
        elif reply.fatal:
            self.load_failed.add(target)
            self.fail_pending(target, "the model did not load")
            for name in self.sides_of(target):
                self.pane(name).set_state("could not load the model: press m or b to pick another")
        if not quiet:
            self.notify(message, title="chat", severity="error", timeout=10)

    def fail_pending(self, target: ChatTarget, message: str) -> None:
        """Every unanswered prompt sent to this worker ends as failed instead of waiting forever."""
        for request_id, (name, _) in list(self.requests.items()):
            choice = self.sides[name].choice
            if choice is not None and choice.target == target:
                self.failed(target, ErrorReply(id=request_id, message=message), quiet=True)

    def turn(self, request_id: str | None):
        if request_id not in self.requests:
            return None
        return self.pane(self.requests[request_id][0]).turns.get(request_id)

    def answered(self, done: Done) -> None:
        turn = self.turn(done.id)
        if turn is None:
            return
        side_name, standalone = self.requests.pop(turn.request_id)
        side = self.sides[side_name]
        self.pane(side_name).finish(turn, done)
        messages = [*([] if standalone else side.history[:-1]), {"role": "user", "content": turn.prompt}]
        if not standalone:
            side.history.append({"role": "assistant", "content": done.text})
        self.conversation.append({"side": side_name, "label": side.choice.label, "model": done.model,
                                  "target": side.choice.target.argv(), "adapter": done.adapter,
                                  "messages": messages, "answer": done.text, "settings": turn.settings,
                                  **{k: getattr(done, k) for k in ("tokens", "tokens_per_s", "first_token_s",
                                                                   "finish", "json_valid", "json_error",
                                                                   "constrained")}})
        self.show_status()

    def flush(self) -> None:
        for side in ("A", "B"):
            self.pane(side).flush()

    # -- sending -----------------------------------------------------------------------------------------

    def active_sides(self) -> list[str]:
        return ["A", "B"] if self.side_by_side else ["A"]

    def send(self, text: str, standalone: bool = False, overrides: dict[str, Any] | None = None) -> None:
        """The same prompt to every visible side; standalone prompts (the library's) leave the history alone."""
        settings = {**self.settings.to_dict(), **(overrides or {})}
        for name in self.active_sides():
            side = self.sides[name]
            if side.choice is None:
                continue
            user = {"role": "user", "content": text}
            messages = [user] if standalone else [*side.history, user]
            if not standalone:
                side.history.append(user)
            request_id = f"{name}{next(self.counter)}"
            self.requests[request_id] = (name, standalone)
            self.pane(name).add_turn(text, request_id).settings = settings
            self.connect(name)
            client = self.clients.get(side.choice.target)
            if client is None:
                self.failed(side.choice.target, ErrorReply(id=request_id, message="no chat worker"), quiet=True)
                continue
            client.send({"op": "generate", "id": request_id, "messages": messages, "settings": settings,
                         "adapter": side.choice.adapter})

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_send()

    def action_send(self) -> None:
        box = self.query_one("#chat-prompt", Input)
        text = box.value.strip()
        if not text:
            box.focus()
            return
        box.value = ""
        self.send(text)

    # -- keys --------------------------------------------------------------------------------------------

    def action_back(self) -> None:
        """Leave the prompt box (the footer then shows the letter keys), or leave the chat."""
        if isinstance(self.focused, Input):
            self.set_focus(None)
            return
        self.app.pop_screen()

    def action_side_by_side(self) -> None:
        self.side_by_side = not self.side_by_side
        self.query_one("#pane-B").display = self.side_by_side
        if self.side_by_side:
            self.connect("B")
        self.show_status()

    def action_json_mode(self) -> None:
        self.settings.json_mode = not self.settings.json_mode
        self.show_status()

    def action_new_chat(self) -> None:
        for name, side in self.sides.items():
            side.history.clear()
            self.pane(name).clear()
        self.notify("new conversation")

    def action_stop_answer(self) -> None:
        for target in {self.sides[n].choice.target for n in self.active_sides() if self.sides[n].choice}:
            if target in self.clients:
                self.clients[target].send({"op": "cancel"})

    def action_pick_a(self) -> None:
        self.pick("A")

    def action_pick_b(self) -> None:
        self.pick("B")

    def pick(self, side: str) -> None:
        choices = run_choices(self.run) if self.run else []

        def picked(choice: ModelChoice | None) -> None:
            if choice is None:
                return
            self.sides[side] = Side(choice)
            self.pane(side).clear()
            if side == "B" and not self.side_by_side:
                self.action_side_by_side()
            else:
                self.connect(side)
            self.release_unused()

        self.app.push_screen(ModelPicker(side, choices), picked)

    def action_settings(self) -> None:
        def applied(settings: Settings | None) -> None:
            if settings is not None:
                self.settings = settings
                self.show_status()

        self.app.push_screen(SettingsScreen(self.settings), applied)

    def action_prompts(self) -> None:
        def chosen(prompts: list[dict[str, Any]] | None) -> None:
            for prompt in prompts or []:
                self.send(prompt["prompt"], standalone=True,
                          overrides={"json_mode": bool(prompt.get("json_mode")),
                                     **({"system": prompt["system"]} if prompt.get("system") else {})})

        current = self.query_one("#chat-prompt", Input).value
        self.app.push_screen(PromptLibraryScreen(self.library, current, self.settings.json_mode,
                                                 self.settings.system), chosen)

    def show_status(self) -> None:
        s = self.settings
        parts = ["side by side" if self.side_by_side else "single", f"JSON mode {'on' if s.json_mode else 'off'}",
                 f"temperature {s.temperature:g}", f"max {s.max_new_tokens} tokens"]
        if s.system:
            parts.append(f"system: {s.system[:30]}")
        if s.stop:
            parts.append(f"stop: {' | '.join(s.stop)[:30]}")
        if self.conversation.path.exists():
            parts.append(f"saved to {self.conversation.path.parent.name}/{self.conversation.path.name}")
        self.query_one("#chat-status", Static).update(" · ".join(parts))
