"""Config tree, presets and the YAML loader: what a user typing a config file notices."""

from __future__ import annotations

import os
import time
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


@pytest.mark.parametrize("override, expected", [
    ("lora.r=true", "lora.r: expected a number, got true"),
    ("train.learning_rate=false", "train.learning_rate: expected a number, got false"),
    ("distributed.deepspeed_stage=false", "distributed.deepspeed_stage: expected a number, got false"),
    ("train.seed=-1", "train.seed: Input should be greater than or equal to 0"),
    ("train.seed=4294967296", "train.seed: Input should be less than or equal to 4294967295"),
    (".=1", "expected key.path=value"),
    ("..=1", "expected key.path=value"),
    ("train..seed=1", "expected key.path=value"),
    ("train.learning_rate=1e-4\nx", "--set train.learning_rate: the value holds a control character (\\n)"),
    ("data.system_prompt=a\x1b]0;x\x07", "the value holds a control character (\\x1b)"),
])
def test_bad_set_values_are_refused_on_one_line(override, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[override])
    assert expected in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_bools_stay_bools_and_seeds_at_the_edges_pass():
    config = load_config(overrides=["train.seed=0", "train.gradient_checkpointing=false", "train.eval_strategy=no",
                                    "train.save_strategy=no"])
    assert config.train.seed == 0 and config.train.gradient_checkpointing is False
    assert load_config(overrides=["train.seed=4294967295"]).train.seed == 2**32 - 1


@pytest.mark.parametrize("text, expected", [
    ("x: &a {b: *a}\n", ":1: invalid YAML: aliases (*name) are not allowed in a config"),
    ("a: &a [x, x]\nb: [*a, *a]\n", ":2: invalid YAML: aliases (*name) are not allowed in a config"),
    ("lora:\n  r: 8\x00\n", ":2: invalid YAML: special characters are not allowed (\\x00)"),
    ("a: " + "[" * 100_000, ":1: invalid YAML: nested deeper than 32 levels"),
    ("lora:\n  r: " + "9" * 5000 + "\n", ": invalid YAML value: Exceeds the limit"),
])
def test_hostile_yaml_is_refused_at_once_naming_the_file(tmp_path: Path, text, expected):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_config(files=[path])
    assert time.perf_counter() - started < 1.0
    assert caught.value.one_line().startswith(str(path)) and expected in caught.value.one_line()


def test_a_billion_laughs_is_refused_within_a_second(tmp_path: Path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nlora: {r: *i}\n", encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases"):
        load_config(files=[path])
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "fifo", "folder"])
def test_a_config_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path: Path, special):
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "config.yaml"
        os.mkfifo(path)
    elif special == "folder":
        path = tmp_path
    with pytest.raises(ConfigError, match=r"is (a device|a FIFO \(named pipe\)|a folder), not a file") as caught:
        load_config(files=[path])
    assert caught.value.where == str(path)


def test_a_section_check_is_blamed_on_the_file_that_set_its_keys_not_a_later_set(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  num_epochs: 2\n  save_strategy: steps\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(files=[path], overrides=["train.max_steps=1"])
    assert caught.value.where == f"{path}:3" and "save_strategy 'steps' needs train.save_steps" in caught.value.message
    with pytest.raises(ConfigError) as caught:  # the --set that made the conflict is blamed when it did
        load_config(overrides=["train.save_strategy=steps"])
    assert caught.value.where == "--set train.save_strategy=steps"


def test_preset_names_cannot_leave_the_preset_folders():
    for name in ("../../etc/passwd", "/etc/passwd", ".hidden", "a/b"):
        with pytest.raises(ConfigError, match="invalid preset name"):
            load_config(preset=name)


def test_no_validation_is_explained_as_it_is():
    from tunedeck.core.training.recipe import no_validation_reason

    assert no_validation_reason(load_config(overrides=["data.val_size=0"])) == \
        "no validation split (data.val_size is 0)"
    held_out_none = no_validation_reason(load_config(overrides=["data.val_size=0.1"]))
    assert held_out_none.startswith("no validation samples: data.val_size 0.1 held out none")
    assert "val_size is 0" not in held_out_none
    assert no_validation_reason(load_config(overrides=["data.val_path=/data/val.json"])) == \
        "no validation samples: none of /data/val.json fits data.cutoff_len"
