"""Config tree, presets and the YAML loader: what a user typing a config file notices."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunedeck.core.config import Config
from tunedeck.core.config_files import (
    ConfigBuilder,
    dump_config,
    load_config,
    preset_description,
    preset_names,
    preset_path,
)
from tunedeck.core.errors import ConfigError


def test_every_shipped_preset_validates_and_says_when_to_use_it():
    names = preset_names()
    assert names[0] == "mi50-2x"
    assert {"mi50-2x", "h100", "cpu-demo"} <= set(names)
    for name in names:
        load_config(preset=name)
        first_line = preset_path(name).read_text(encoding="utf-8").splitlines()[0]
        assert first_line.startswith(f"# {name}:"), name
        assert "use" in preset_description(name).lower()


def test_mi50_preset_holds_the_reference_settings_with_advice():
    config = load_config(preset="mi50-2x")
    assert config.model.name_or_path == "Qwen/Qwen2.5-7B-Instruct"
    assert config.model.template == "qwen"
    assert (config.lora.r, config.lora.alpha) == (64, 128)
    assert config.train.learning_rate == pytest.approx(5e-5)
    assert config.train.num_epochs == 5
    assert config.data.cutoff_len == 4096
    assert config.train.precision == "bf16"
    assert (config.distributed.num_gpus, config.distributed.deepspeed_stage) == (2, 2)
    text = preset_path("mi50-2x").read_text(encoding="utf-8")
    advice = {line.split(":")[0].strip(): line.split("#", 1)[1] for line in text.splitlines()
              if ":" in line and "#" in line and not line.lstrip().startswith("#")}
    assert "128" in advice["r"] and "32" in advice["r"]
    assert "1e-4" in advice["learning_rate"] and "2e-5" in advice["learning_rate"]
    assert "halve" in advice["cutoff_len"]


def test_cpu_demo_is_the_embedded_default():
    config = load_config(preset="cpu-demo")
    assert config.model.name_or_path == "builtin:smollm2-135m-instruct"
    assert config.data.path.startswith("builtin:")
    assert config.train.precision == "auto"
    assert config.train.sample_prompts == ["Who are you?"]


def test_unknown_key_names_the_key_the_file_and_the_line(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  template: auto\nlora:\n  r: 8\n  alpah: 16\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(files=[path])
    message = info.value.one_line()
    assert f"{path}:5" in message
    assert "lora.alpah" in message and "unknown key" in message
    assert "did you mean 'alpha'" in message


def test_unknown_section_is_refused(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("trainer:\n  lr: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="trainer: unknown key"):
        load_config(files=[path])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lora:\n  r: 0\n", "lora.r: Input should be greater than or equal to 1"),
        ("train:\n  learning_rate: fast\n", "train.learning_rate: Input should be a valid number"),
        ("train:\n  precision: fp8\n", "train.precision: Input should be 'auto', 'fp32', 'fp16' or 'bf16'"),
        ("data:\n  val_size: 1.5\n", "data.val_size: Input should be less than 1"),
        ("train:\n  eval_strategy: steps\n", "train.eval_strategy 'steps' needs train.eval_steps"),
        ("distributed:\n  offload_optimizer: true\n", "offload_optimizer needs deepspeed_stage 2 or 3"),
        ("model:\n  template: vicuna\n", "unknown template 'vicuna'"),
    ],
)
def test_bad_values_are_refused_with_the_reason(tmp_path: Path, text: str, expected: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(files=[path])
    assert expected in info.value.one_line()
    assert str(path) in info.value.one_line()


def test_invalid_yaml_names_the_line(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("lora:\n  r: 8\n  alpha: [16\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: invalid YAML"):
        load_config(files=[path])


def test_overlays_apply_in_order_and_set_wins(tmp_path: Path):
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("lora:\n  r: 32\ntrain:\n  num_epochs: 2\n", encoding="utf-8")
    config = load_config(preset="mi50-2x", files=[overlay], overrides=["train.num_epochs=7", "lora.dropout=0.1"])
    assert config.lora.r == 32  # file over preset
    assert config.lora.alpha == 128  # preset kept where the file is silent
    assert config.train.num_epochs == 7  # --set over file
    assert config.lora.dropout == pytest.approx(0.1)


def test_bad_override_is_named():
    with pytest.raises(ConfigError, match=r"--set train\.batch_size=-1: train\.batch_size"):
        load_config(overrides=["train.batch_size=-1"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(overrides=["train.batch_size"])


def test_relative_data_paths_follow_the_config_file(tmp_path: Path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "run.yaml").write_text("data:\n  path: data/train.jsonl\n", encoding="utf-8")
    config = load_config(files=[folder / "run.yaml"])
    assert config.data.path == str((folder / "data" / "train.jsonl").resolve())


def test_dumped_config_loads_back_identically(tmp_path: Path):
    config = load_config(preset="mi50-2x", overrides=["train.sample_prompts=[hi, there]"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert load_config(files=[path]) == config
    assert set(yaml.safe_load(path.read_text())) == set(Config.model_fields)


def test_every_field_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, Config.__mro__[1]):
                walk(annotation)

    walk(Config)


def test_unknown_preset_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'cpu-demo'"):
        ConfigBuilder().add_preset("cpu-dmeo")
