"""New run through the app: dataset check, preset, hyperparameter form refusals, review, launch, save as preset."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from tunedeck.core.config_files import load_config
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.config_form import ConfigFormScreen
from tunedeck.tui.screens.data import DataScreen
from tunedeck.tui.screens.live import LiveScreen
from tunedeck.tui.screens.new_run import NewRunScreen
from tunedeck.tui.screens.prompt import PromptScreen
from tunedeck.tui.screens.review import ReviewScreen

from .tui_support import Posted, RecordingLauncher, make_services, screen_text, wait_for

SHIPPED_DATASET = Path(__file__).resolve().parents[1] / "presets" / "datasets" / "demo_identity.json"


async def open_form(app, pilot, dataset: str, preset: str) -> ConfigFormScreen:
    await pilot.press("n")
    assert await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
    app.screen.query_one("#dataset", Input).value = dataset
    await pilot.press("enter")
    if dataset:  # the inspection screen opens on the file: accept it
        assert await wait_for(pilot, lambda: isinstance(app.screen, DataScreen))
        await pilot.pause()
        await pilot.press("a")
        assert await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
    expected = "usable rows" if dataset else "the preset's own dataset"
    assert await wait_for(pilot, lambda: expected in str(app.screen.query_one("#dataset-status").content))
    options = app.screen.query_one("#presets")
    options.highlighted = [options.get_option_at_index(i).id for i in range(options.option_count)].index(preset)
    await pilot.press("enter")
    assert await wait_for(pilot, lambda: isinstance(app.screen, ConfigFormScreen))
    await pilot.pause()
    return app.screen


async def set_field(pilot, form: ConfigFormScreen, key: str, text: str):
    row = form.query_one(f"#field-{key.replace('.', '-')}")
    row.query_one(Input).value = text
    await pilot.pause()
    return row


async def test_a_bad_dataset_is_refused_with_its_reason(tmp_path: Path):
    bad = tmp_path / "rows.json"
    bad.write_text('[{"question": "no known columns"}]')
    app = TunedeckApp(services=make_services(tmp_path / "runs", launcher=RecordingLauncher(tmp_path / "runs")))
    posted = Posted()
    async with app.run_test(size=(150, 40), message_hook=posted) as pilot:
        await pilot.press("n")
        assert await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        app.screen.query_one("#dataset", Input).value = str(bad)
        await pilot.press("ctrl+n")
        assert await wait_for(pilot, lambda: "✗" in str(app.screen.query_one("#dataset-status").content))
        assert f"{bad}" in str(app.screen.query_one("#dataset-status").content)
        assert await wait_for(pilot, lambda: posted.said(str(bad)))  # refused, with its reason
        assert posted.notes[-1].title == "dataset refused"
        assert isinstance(app.screen, NewRunScreen)  # not past the dataset step


async def test_the_form_refuses_bad_values_with_the_reason_then_launches(tmp_path: Path):
    runs = tmp_path / "runs"
    launcher = RecordingLauncher(runs)
    dataset = str(SHIPPED_DATASET)  # a real file path, always there (the shared samples may not be)
    app = TunedeckApp(services=make_services(runs, launcher=launcher))
    posted = Posted()
    async with app.run_test(size=(150, 45), message_hook=posted) as pilot:
        form = await open_form(app, pilot, dataset, "mi50-2x")
        text = screen_text(app)
        assert "preset advice: the same template is written into the GGUF" in text  # mi50 advice as help
        lr = form.query_one("#field-train-learning_rate")
        assert "1e-4 if the loss falls too slowly; 2e-5 if it oscillates" in str(
            lr.query_one(".field-help").content)
        row = await set_field(pilot, form, "train.learning_rate", "-1")
        assert await wait_for(pilot, lambda: row.error == "Input should be greater than 0 (got -1)")
        assert "refused: Input should be greater than 0 (got -1)" in str(row.query_one(".field-error").content)
        await pilot.press("ctrl+r")
        assert await wait_for(pilot, lambda: posted.said("train.learning_rate: Input should be greater than 0"))
        assert isinstance(app.screen, ConfigFormScreen)  # refused before review

        await set_field(pilot, form, "train.learning_rate", "2e-5")
        assert await wait_for(pilot, lambda: row.error is None)
        form.query_one("#field-train-max_steps").query_one(Input).value = "40"
        await pilot.pause()
        await pilot.press("ctrl+r")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        review = screen_text(app)
        assert "learning_rate: 2.0e-05" in review and f"path: {dataset}" in review and "max_steps: 40" in review
        await pilot.press("l")
        assert await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen))
        [asked] = posted.of(ReviewScreen.LaunchRun)  # the review asked the app, which launched and attached
        assert asked.config is launcher.launched[0][0] and posted.said("starting the run")
    [(config, label, preset)] = launcher.launched
    assert (config.train.learning_rate, config.train.max_steps, config.data.path) == (2e-5, 40, dataset)
    assert (config.lora.r, config.distributed.deepspeed_stage, label, preset) == (64, 2, "mi50-2x", "mi50-2x")


async def test_cross_field_rules_are_refused_at_review(tmp_path: Path):
    app = TunedeckApp(services=make_services(tmp_path, launcher=RecordingLauncher(tmp_path)))
    posted = Posted()
    async with app.run_test(size=(150, 45), message_hook=posted) as pilot:
        form = await open_form(app, pilot, "builtin:demo_identity.json", "cpu-demo")
        form.query_one("#field-train-eval_strategy").query_one("Select").value = "steps"
        await pilot.pause()
        await pilot.press("ctrl+r")
        assert await wait_for(pilot, lambda: posted.said("train.eval_strategy 'steps' needs train.eval_steps"))
        assert isinstance(app.screen, ConfigFormScreen)


async def test_the_form_saves_a_preset(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    app = TunedeckApp(services=make_services(tmp_path, launcher=RecordingLauncher(tmp_path)))
    saved = tmp_path / "config" / "tunedeck" / "presets" / "tiny-demo.yaml"
    async with app.run_test(size=(150, 45)) as pilot:
        form = await open_form(app, pilot, "", "cpu-demo")
        await set_field(pilot, form, "lora.r", "8")
        await pilot.press("ctrl+s")
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"tiny-demo", "enter")
        assert await wait_for(pilot, saved.is_file)
    config = load_config(preset="tiny-demo")
    assert config.lora.r == 8 and config == load_config(preset="cpu-demo", overrides=["lora.r=8"])
