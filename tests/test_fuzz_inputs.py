"""Generated bad configs and datasets: every one is refused with exit code 2 and a line naming the file."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunedeck.core.cli.main import main
from tunedeck.core.config import DataConfig, LoraConfig, TrainConfig
from tunedeck.core.data.loading import load_data
from tunedeck.core.errors import DataError

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
