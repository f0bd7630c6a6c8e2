"""The chat pane, driven with Pilot against a real chat worker on the tiny model with a random LoRA adapter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.chat_helpers import make_chat_run
from tests.tui_support import Posted, screen_text, wait_for
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.chat import ChatScreen
from tunedeck.tui.screens.chat_dialogs import ModelPicker, PromptLibraryScreen, SettingsScreen
from tunedeck.tui.screens.runs import RunsScreen
from tunedeck.tui.widgets.chat_pane import ChatPane

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chat_run(tiny_model_dir: Path, tmp_path_factory) -> Path:
    return make_chat_run(tiny_model_dir, tmp_path_factory.mktemp("tui-chat"))


def answers(screen: ChatScreen, side: str) -> list:
    return list(screen.query_one(f"#pane-{side}", ChatPane).turns.values())


async def type_and_send(pilot, text: str) -> None:
    screen = pilot.app.screen
    screen.query_one("#chat-prompt").focus()
    await pilot.press(*text, "enter")


async def test_chat_pane_streams_compares_side_by_side_and_shows_the_json_badge(chat_run: Path):
    app = TunedeckApp(runs_root=chat_run.parent)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await pilot.press("c")  # the runs screen: chat with the selected run
        assert await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
        screen: ChatScreen = app.screen
        screen.settings.max_new_tokens = 96  # long enough to be seen mid-way on a fast machine
        assert await wait_for(pilot, lambda: "ready" in screen_text(app), timeout_s=120)

        await type_and_send(pilot, "Who are you?")
        assert await wait_for(pilot, lambda: answers(screen, "A")[0].done is not None, timeout_s=60)
        first = answers(screen, "A")[0]
        assert first.pieces > 1  # the answer arrived piece by piece before it finished: streamed
        assert first.done.tokens > 1 and first.text.strip()[:20] in screen_text(app)
        assert "tok/s" in screen_text(app)
        screen.settings.max_new_tokens = 24

        await pilot.press("escape")  # leave the prompt box: the letter keys act now
        assert not isinstance(screen.focused, type(screen.query_one("#chat-prompt")))
        await pilot.press("s")
        assert screen.query_one("#pane-B").display and "side by side" in screen_text(app)
        await type_and_send(pilot, "Hello")
        assert await wait_for(pilot, lambda: answers(screen, "B") and answers(screen, "B")[-1].done
                              and answers(screen, "A")[-1].done, timeout_s=90)
        tuned, base = answers(screen, "A")[-1], answers(screen, "B")[-1]
        assert tuned.done.adapter is True and base.done.adapter is False
        assert tuned.text != base.text  # one worker, adapter on and off
        text = screen_text(app)
        assert "A: fine-tuned" in text and "B: base" in text

        await pilot.press("escape", "j")
        assert "JSON mode on" in screen_text(app)
        await type_and_send(pilot, "Score it")
        assert await wait_for(pilot, lambda: answers(screen, "A")[-1].done and answers(screen, "B")[-1].done,
                              timeout_s=90)
        assert answers(screen, "A")[-1].done.json_valid is False
        ok = await wait_for(pilot, lambda: screen_text(app).count("JSON invalid") == 2)  # one badge per answer
        assert ok, screen_text(app)

    logs = list((chat_run / "eval").glob("chat-*.jsonl"))
    assert len(logs) == 1
    records = [json.loads(line) for line in logs[0].read_text().splitlines()]
    assert [(r["side"], r["adapter"]) for r in records] == [("A", True), ("A", True), ("B", False), ("A", True),
                                                           ("B", False)]
    assert records[0]["messages"] == [{"role": "user", "content": "Who are you?"}]
    assert records[3]["messages"][-1]["content"] == "Score it" and len(records[3]["messages"]) == 5
    assert records[-1]["settings"]["json_mode"] is True and records[-1]["json_valid"] is False


async def test_the_prompt_library_saves_and_replays_a_prompt(chat_run: Path):
    app = TunedeckApp(runs_root=chat_run.parent)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        app.screen.post_message(RunsScreen.OpenChat(chat_run.name))  # as `c` on the runs list asks for it
        assert await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
        screen: ChatScreen = app.screen
        screen.settings.max_new_tokens = 8
        await pilot.press(*"Rate this from 0 to 10")
        await pilot.press("escape", "j", "p")  # JSON mode on, then the library
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptLibraryScreen))
        await pilot.press("s")  # save the prompt being typed, with JSON mode
        saved = json.loads((chat_run / "eval" / "prompts.json").read_text())
        assert saved[-1]["prompt"] == "Rate this from 0 to 10" and saved[-1]["json_mode"] is True
        await pilot.press("escape", "j")  # JSON mode off again; the saved prompt keeps its own
        assert "JSON mode off" in screen_text(app)
        await pilot.press("p")
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptLibraryScreen))
        assert "Rate this from 0 to 10" in screen_text(app)
        await pilot.press("enter")  # replay it
        assert await wait_for(pilot, lambda: answers(screen, "A") and answers(screen, "A")[-1].done, timeout_s=120)
        replayed = answers(screen, "A")[-1]
        assert replayed.prompt == "Rate this from 0 to 10" and replayed.done.json_valid is False
        assert screen.sides["A"].history == []  # a replayed prompt stands alone

        await pilot.press("m")  # pick side A's model: the run's list (fine-tuned, base, checkpoints, exports)
        assert await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker))
        assert "fine-tuned" in screen_text(app) and "base" in screen_text(app)
        await pilot.press("down", "enter")
        assert await wait_for(pilot, lambda: screen.sides["A"].choice.label == "base")
        assert "A: base" in screen_text(app)
        assert len(screen.clients) == 1  # the same worker answers with its adapter off


def test_the_chat_screen_loads_no_ml_library():
    script = textwrap.dedent("""
        import json, sys
        import tunedeck.tui.screens.chat, tunedeck.tui.chat_client, tunedeck.tui.app
        import tunedeck.core.chat.store, tunedeck.core.chat.protocol, tunedeck.core.chat.resolve
        import tunedeck.core.cli.commands.chat
        print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {"torch", "transformers", "peft",
                                                                           "llama_cpp", "trl", "datasets"})))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


async def test_a_model_that_does_not_load_fails_the_waiting_prompt_with_a_readable_error(tmp_path: Path):
    from textual.app import App

    from tunedeck.tui.chat_client import ChatTarget, spawn_worker

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(ChatScreen(ChatTarget(str(tmp_path / "gone.gguf")), spawn_worker))

    app = Host()
    posted = Posted()
    async with app.run_test(size=(140, 36), message_hook=posted) as pilot:
        await pilot.pause()
        await pilot.press(*"hello", "enter")
        screen = app.screen
        assert await wait_for(pilot, lambda: answers(screen, "A")[0].done is not None, timeout_s=60)
        assert "the model did not load" in screen_text(app)
        assert "could not load the model" in screen_text(app)
        assert posted.said("not a run, a model folder or a .gguf file")


async def test_the_settings_dialog_refuses_bad_values_and_applies_good_ones(tmp_path: Path):
    from textual.app import App
    from textual.widgets import Input

    from tunedeck.tui.chat_client import ChatTarget, spawn_worker

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(ChatScreen(ChatTarget(str(tmp_path / "gone.gguf")), spawn_worker))

    app = Host()
    posted = Posted()
    async with app.run_test(size=(140, 44), message_hook=posted) as pilot:
        await pilot.pause()
        chat = app.screen
        await pilot.press("escape", "o")
        assert await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        app.screen.query_one("#set-max_new_tokens", Input).value = "many"
        app.screen.query_one("#set-stop", Input).value = "###|END"
        app.screen.query_one("#set-max_new_tokens", Input).focus()
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: posted.said("max_new_tokens must be a whole number"))
        app.screen.query_one("#set-max_new_tokens", Input).value = "32"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.screen is chat)
        assert chat.settings.max_new_tokens == 32 and chat.settings.stop == ["###", "END"]
        assert "max 32 tokens" in screen_text(app) and "stop: ### | END" in screen_text(app)
