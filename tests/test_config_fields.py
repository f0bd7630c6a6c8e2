"""Config fields for forms: kinds and bounds from the model, preset advice comments, refusals worded as the CLI's."""

from __future__ import annotations

import pytest

from tunedeck.core.config_fields import (
    build_from_form,
    config_fields,
    field_error,
    save_preset,
    text_value,
)
from tunedeck.core.config_files import load_config, preset_comments, preset_names, preset_path
from tunedeck.core.errors import ConfigError

FIELDS = {spec.key: spec for spec in config_fields()}


def test_every_leaf_of_the_config_becomes_a_field_with_its_type_and_bounds():
    assert FIELDS["lora.r"].kind == "int" and FIELDS["lora.r"].bounds == ">= 1, <= 1024"
    assert FIELDS["train.learning_rate"].kind == "float" and FIELDS["train.learning_rate"].bounds == "> 0, <= 1"
    assert FIELDS["train.precision"].choices == ("auto", "fp32", "fp16", "bf16")
    assert FIELDS["distributed.deepspeed_stage"].choices == (0, 2, 3)
    assert FIELDS["train.max_steps"].optional and FIELDS["train.max_steps"].kind == "int"
    assert FIELDS["lora.target_modules"].kind == "list" and FIELDS["train.gradient_checkpointing"].kind == "bool"
    assert all(spec.description for spec in FIELDS.values())


def test_preset_advice_comments_are_read_per_key():
    advice = preset_comments(preset_path("mi50-2x"))
    assert advice[("lora", "r")].startswith("raise to 128 if the scoring rules are not learned")
    assert advice[("train", "learning_rate")] == "1e-4 if the loss falls too slowly; 2e-5 if it oscillates"
    assert ("lora", "target_modules") not in advice


@pytest.mark.parametrize("key, text", [("train.learning_rate", "-1"), ("lora.r", "0"), ("train.batch_size", "two"),
                                       ("data.val_size", "1.5")])
def test_form_refusals_match_the_command_line(key, text):
    spec = FIELDS[key]
    reason = field_error("mi50-2x", spec, text_value(spec, text))
    with pytest.raises(ConfigError) as cli:
        load_config(preset="mi50-2x", overrides=[f"{key}={text}"])
    assert reason and cli.value.message == f"{key}: {reason.split(' (')[0]}"


def test_text_fields_keep_colons_and_lists_read_as_yaml():
    config = build_from_form("cpu-demo", {("data", "system_prompt"): text_value(FIELDS["data.system_prompt"],
                                                                                  "Answer as: JSON"),
                                          ("export", "quantizations"): text_value(FIELDS["export.quantizations"],
                                                                                  "[Q4_K_M, Q8_0]")})
    assert config.data.system_prompt == "Answer as: JSON"
    assert config.export.quantizations == ["Q4_K_M", "Q8_0"]


def test_saved_preset_reloads_to_the_same_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    config = build_from_form("cpu-demo", {("train", "learning_rate"): 5e-4, ("train", "max_steps"): 4})
    path = save_preset("my-demo", config, based_on="cpu-demo")
    assert path == tmp_path / "tunedeck" / "presets" / "my-demo.yaml"
    assert path.read_text().startswith("# my-demo: saved from the tunedeck form")
    assert "my-demo" in preset_names()
    assert load_config(preset="my-demo") == config
    with pytest.raises(ConfigError):
        save_preset("../escape", config)
