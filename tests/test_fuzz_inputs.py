"""Generated bad configs and datasets: every one is refused with exit code 2 and a line naming the file."""

from __future__ import annotations

import json
import string
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tunedeck.core.jobs.runs as runs_module
from tunedeck.core.cli.main import main
from tunedeck.core.config import DataConfig, LoraConfig, TrainConfig
from tunedeck.core.data.loading import load_data
from tunedeck.core.errors import DataError

from .fuzz_cases import all_cases

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
words = st.text(alphabet=string.ascii_lowercase + "_", min_size=3, max_size=12)
junk_text = st.text(alphabet=string.ascii_letters + " -!?", min_size=1, max_size=10).filter(
    lambda t: t.strip() and not t.strip().lower().replace(".", "").isdigit())


def unknown_key(section: str, known: type) -> st.SearchStrategy:
    return words.filter(lambda k: k not in known.model_fields).map(lambda k: {section: {k: 1}})


bad_configs = st.one_of(
    unknown_key("lora", LoraConfig),
    unknown_key("train", TrainConfig),
    unknown_key("data", DataConfig),
    words.filter(lambda k: k not in ("model", "data", "lora", "train", "distributed", "export")).map(
        lambda k: {k: {"x": 1}}),
    st.integers(max_value=0).map(lambda r: {"lora": {"r": r}}),
    st.integers(min_value=1025, max_value=10**9).map(lambda r: {"lora": {"r": r}}),
    st.floats(max_value=0, allow_nan=False).map(lambda lr: {"train": {"learning_rate": lr}}),
    st.floats(min_value=1.0, max_value=1e9).map(lambda v: {"data": {"val_size": v}}),
    st.integers(max_value=15).map(lambda n: {"data": {"cutoff_len": n}}),
    junk_text.map(lambda t: {"train": {"batch_size": t}}),
    junk_text.filter(lambda t: t not in ("auto", "fp32", "fp16", "bf16")).map(lambda t: {"train": {"precision": t}}),
    st.lists(st.integers(), min_size=1, max_size=3).map(lambda v: {"train": {"num_epochs": v}}),
    st.sampled_from([[1, 2], "just a string", 42]),  # not a mapping of sections
    st.sampled_from(["lora:\n  r: [8\n", "train:\n\tbatch_size: 2\n", "lora: {r: 8\n", "a: b: c\n"]),
)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def refused(capsys, args: list[str], runs: Path, path: Path) -> None:
    code = main(["--runs-dir", str(runs), *args, "--headless"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(path) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())


@FUZZ
@given(config=bad_configs)
def test_bad_config_files_exit_2_naming_the_file(tmp_path_factory, capsys, config):
    folder = tmp_path_factory.mktemp("cfg")
    path = folder / "run.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config), encoding="utf-8")
    refused(capsys, ["--config", str(path), "--set", "train.max_steps=1"], folder / "runs", path)


def rows_file(rows) -> bytes:
    return json.dumps(rows, ensure_ascii=False).encode("utf-8")


bad_datasets = st.one_of(
    st.tuples(st.just(".json"), st.text(min_size=1, max_size=40).filter(lambda t: not _is_json(t))
              .map(lambda t: t.encode("utf-8"))),
    st.tuples(st.just(".json"), st.sampled_from([b"", b"   \n", b"[]", b"{}", b"null", b"42"])),
    st.tuples(st.just(".json"), words.map(lambda w: f'[{{"instruction": "caf\u00e9 {w}", "output": "x"}}]'
                                          .encode("latin-1"))),
    st.tuples(st.just(".json"), st.dictionaries(words.filter(lambda k: k not in ("instruction", "input", "output",
                                                                                 "conversations", "messages")),
                                                st.text(max_size=5), min_size=1, max_size=3)
              .map(lambda row: rows_file([row]))),
    st.tuples(st.just(".json"), words.map(lambda w: rows_file([{"instruction": w}]))),
    st.tuples(st.just(".json"), words.map(lambda w: rows_file([{"instruction": w, "output": ""}]))),
    st.tuples(st.just(".json"), st.lists(st.integers(), min_size=1, max_size=4).map(rows_file)),
    st.tuples(st.just(".jsonl"), st.lists(words.map(lambda w: "{" + w), min_size=1, max_size=4)
              .map(lambda lines: "\n".join(lines).encode())),
    st.tuples(st.just(".json"), words.map(lambda w: rows_file([{"messages": [{"role": "user", "content": w}]}]))),
    st.tuples(st.just(".csv"), words.map(lambda w: f"{w}\n".encode())),
)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


@FUZZ
@given(case=bad_datasets)
def test_bad_datasets_exit_2_naming_the_file(tmp_path_factory, capsys, case):
    suffix, content = case
    folder = tmp_path_factory.mktemp("data")
    path = folder / f"train{suffix}"
    path.write_bytes(content)
    refused(capsys, ["--preset", "cpu-demo", "--set", f"data.path={path}", "--set", "train.max_steps=1"],
            folder / "runs", path)


def test_a_huge_line_is_refused_without_loading_it(tmp_path: Path, capsys, runs):
    path = tmp_path / "huge.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('{"instruction": "' + "x" * (65 * 1024 * 1024) + '", "output": "y"}\n')
    refused(capsys, ["--preset", "cpu-demo", "--set", f"data.path={path}"], runs, path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200), suffix=st.sampled_from([".json", ".jsonl", ".csv", ".txt"]))
def test_loaders_raise_only_data_errors_on_arbitrary_bytes(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"f{suffix}"
    path.write_bytes(content)
    try:
        loaded = load_data(DataConfig(path=str(path)))
    except DataError as exc:
        assert str(path) in exc.one_line()
    else:
        assert loaded.conversations


CASES = all_cases()


def refuse_to_train(*args, **kwargs):
    raise AssertionError("a bad input got as far as starting a worker")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_every_bad_input_is_refused_on_one_line_naming_its_file(case, tmp_path: Path, capfd, monkeypatch,
                                                                tiny_model_dir):
    monkeypatch.setenv("TUNEDECK_TINY_MODEL", str(tiny_model_dir))
    monkeypatch.setattr(runs_module, "start_worker", refuse_to_train)
    args, where = case.build(tmp_path)
    runs = tmp_path / "runs"
    started = time.perf_counter()
    code = main(["--runs-dir", str(runs), *args, "--headless"])
    err = capfd.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"tunedeck: {where}:"), err
    assert not runs.exists() or not any(runs.iterdir())
    assert time.perf_counter() - started < 10  # no hang: alias bombs, devices and FIFOs are refused unread


@pytest.fixture(scope="module")
def short_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model, reading at most 64 positions."""
    folder = tmp_path_factory.mktemp("short-model")
    for file in tiny_model_dir.iterdir():
        (folder / file.name).symlink_to(file)
    config = json.loads((tiny_model_dir / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 64}), encoding="utf-8")
    return folder


def builtin_gguf() -> Path:
    from tunedeck.core.models.loading import BUILTIN_MODELS, builtin_gguf_path

    return builtin_gguf_path(BUILTIN_MODELS["smollm2-135m-instruct"])


LONG = "tell me more about this "
# (id, model: hf | gguf | a path under the test's folder, extra arguments, what the line names, what it says)
CHAT_CASES = [
    ("hf-prompt-past-positions", "hf", ["--prompt", LONG * 20], None, "this model reads at most 64"),
    ("hf-prompt-far-past-positions", "hf", ["--prompt", LONG * 2000], None, "this model reads at most 64"),
    ("hf-system-past-positions", "hf", ["--prompt", "hi", "--system", LONG * 20], None, "reads at most 64"),
    ("gguf-prompt-past-context", "gguf", ["--prompt", LONG * 900], None, "this model's context holds 4096"),
    ("gguf-system-past-context", "gguf", ["--prompt", "hi", "--system", LONG * 900], None, "context holds 4096"),
    ("temperature-too-high", "hf", ["--prompt", "hi", "--temperature", "9"], "tunedeck chat", "temperature"),
    ("top-p-zero", "hf", ["--prompt", "hi", "--top-p", "0"], "tunedeck chat", "top_p"),
    ("top-k-negative", "hf", ["--prompt", "hi", "--top-k", "-1"], "tunedeck chat", "top_k"),
    ("no-new-tokens", "hf", ["--prompt", "hi", "--max-new-tokens", "0"], "tunedeck chat", "max_new_tokens"),
    ("repetition-penalty-9", "hf", ["--prompt", "hi", "--repetition-penalty", "9"], "tunedeck chat", "repetition"),
    ("empty-stop", "gguf", ["--prompt", "hi", "--stop", ""], "tunedeck chat", "stop"),
    ("base-of-a-plain-model", "hf", ["--prompt", "hi", "--base"], None, "--base needs a model"),
    ("not-a-model", "nope", ["--prompt", "hi"], None, "not a run, a model folder or a .gguf file"),
    ("text-as-gguf", "text.gguf", ["--prompt", "hi"], None, "llama.cpp cannot load this GGUF"),
    ("empty-model-config", "empty-model", ["--prompt", "hi"], None, "config.json"),
]


@pytest.mark.parametrize("case_id, model, extra, where, says", CHAT_CASES, ids=[c[0] for c in CHAT_CASES])
def test_bad_chat_prompts_and_settings_are_refused_at_once(case_id, model, extra, where, says, short_model,
                                                          tmp_path: Path, capfd):
    (tmp_path / "text.gguf").write_text("not a gguf\n", encoding="utf-8")
    (tmp_path / "empty-model").mkdir()
    (tmp_path / "empty-model" / "config.json").write_text("", encoding="utf-8")
    target = {"hf": short_model, "gguf": builtin_gguf()}.get(model, tmp_path / model)
    shown = where or (target.name if model in ("hf", "gguf") else str(target))
    started = time.perf_counter()
    code = main(["chat", str(target), *extra, "--runs-dir", str(tmp_path / "runs")])
    err = capfd.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"tunedeck: {shown}:") and says in err, err
    if "past" in case_id:  # refused before any work: the limit and the prompt's own count, at once
        assert "the prompt is " in err and " tokens;" in err
        assert time.perf_counter() - started < 30


def test_the_catalogue_holds_over_300_distinct_bad_inputs():
    ids = [case.id for case in CASES] + [case[0] for case in CHAT_CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 300
    kinds = {case_id.split("-")[0] for case_id in ids}
    assert {"file", "set", "data", "val", "info", "model"} <= kinds


SUBPROCESS_CASES = ["file-hostile-2", "file-hostile-8", "set-bad-11", "data-fifo", "data-dev-zero",
                    "data-deep-array", "data-lone-surrogate", "info-file-name-up", "model-empty-config"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_a_handful_through_the_real_command_line(case_id, tmp_path: Path, tunedeck_cmd, tiny_model_dir):
    case = next(c for c in CASES if c.id == case_id)
    args, where = case.build(tmp_path)
    runs = tmp_path / "runs"
    result = subprocess.run([*tunedeck_cmd, "--runs-dir", str(runs), *args, "--headless"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(f"tunedeck: {where}:")
    assert "Traceback" not in result.stderr and (not runs.exists() or not any(runs.iterdir()))
