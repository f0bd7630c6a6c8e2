"""Reading training data: formats, LLaMA-Factory mappings, unusable rows, splits and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunedeck.core.config import DataConfig
from tunedeck.core.data.loading import load_data, split_train_val
from tunedeck.core.errors import DataError

from .conftest import SHARED_DATASETS


def write(path: Path, rows, jsonl: bool = False) -> Path:
    if jsonl:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def test_alpaca_rows_become_user_assistant_with_input_and_history(tmp_path: Path):
    path = write(tmp_path / "a.json", [
        {"instruction": "Translate", "input": "chat", "output": "cat", "system": "Be brief.",
         "history": [["hi", "hello"]]},
        {"instruction": "Add 2 and 2", "input": "", "output": "4"},
    ])
    data = load_data(DataConfig(path=str(path)))
    assert data.format == "alpaca"
    first = [(m.role, m.content) for m in data.conversations[0].messages]
    assert first == [("system", "Be brief."), ("user", "hi"), ("assistant", "hello"),
                     ("user", "Translate\nchat"), ("assistant", "cat")]
    assert [(m.role, m.content) for m in data.conversations[1].messages] == [("user", "Add 2 and 2"),
                                                                            ("assistant", "4")]


def test_openai_messages_jsonl_keeps_line_numbers_and_reports_bad_lines(tmp_path: Path):
    path = tmp_path / "chat.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    no_answer = {"messages": [{"role": "user", "content": "anyone?"}]}
    path.write_text(json.dumps(good) + "\n{broken json\n\n" + json.dumps(no_answer) + "\n" + json.dumps(good) +
                    "\n", encoding="utf-8")
    data = load_data(DataConfig(path=str(path)))
    assert data.format == "openai"
    assert [c.line for c in data.conversations] == [1, 5]
    assert [(p.line, p.message.split(" ")[0]) for p in data.problems] == [(2, "invalid"), (4, "no")]
    assert data.problems[1].message == "no assistant turn to learn from"


def test_sharegpt_function_calls_and_tools_map_to_chat_roles(tmp_path: Path):
    row = {
        "conversations": [
            {"from": "human", "value": "Invoice John"},
            {"from": "function_call", "value": json.dumps({"name": "invoice", "arguments": {"who": "John"}})},
            {"from": "observation", "value": "{\"id\": 7}"},
            {"from": "gpt", "value": "Done: invoice 7."},
        ],
        "tools": json.dumps([{"name": "invoice", "description": "make an invoice", "parameters": {}}]),
    }
    data = load_data(DataConfig(path=str(write(tmp_path / "s.json", [row]))))
    conv = data.conversations[0]
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "assistant"]
    assert conv.messages[1].tool_calls == [{"type": "function",
                                            "function": {"name": "invoice", "arguments": {"who": "John"}}}]
    assert conv.tools[0]["function"]["name"] == "invoice"


def test_dataset_info_mapping_with_custom_tags(tmp_path: Path):
    write(tmp_path / "mine.json", [{"dialog": [{"speaker": "me", "text": "hi"}, {"speaker": "ai", "text": "yo"}]}])
    info = {"mine": {"file_name": "mine.json", "formatting": "sharegpt", "columns": {"messages": "dialog"},
                     "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "ai"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    data = load_data(DataConfig(dataset_info=str(tmp_path / "dataset_info.json"), name="mine"))
    assert [(m.role, m.content) for m in data.conversations[0].messages] == [("user", "hi"), ("assistant", "yo")]


@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="the shared sample datasets are not beside this checkout")
@pytest.mark.parametrize(("name", "rows", "fmt"), [("identity", 91, "alpaca"), ("alpaca_zh_demo", 1000, "alpaca"),
                                                    ("glaive_toolcall_zh_demo", 300, "sharegpt")])
def test_shared_llama_factory_datasets_load_through_dataset_info(name: str, rows: int, fmt: str):
    data = load_data(DataConfig(dataset_info=str(SHARED_DATASETS / "dataset_info.json"), name=name))
    assert data.format == fmt
    assert len(data.conversations) + len(data.problems) == rows
    assert len(data.conversations) >= rows - 5


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        (b"", ".json", "data file is empty"),
        (b"[{\"instruction\": 1,\n \"output\": }]", ".json", r"a\.json:2: invalid JSON at line 2"),
        ("[{\"instruction\": \"caf\u00e9\"}]".encode("latin-1"), ".json", r"a\.json:1: not UTF-8"),
        (b"{\"a\": 1}", ".json", "expected a JSON list of rows"),
        (b"[{\"question\": \"q\", \"answer\": \"a\"}]", ".json", "cannot tell the format"),
        (b"[{\"instruction\": \"q\"}]", ".json", "no usable rows; first problem: missing column 'output'"),
    ],
)
def test_unreadable_files_raise_one_line_naming_the_file(tmp_path: Path, content: bytes, suffix: str, expected: str):
    path = tmp_path / f"a{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as info:
        load_data(DataConfig(path=str(path)))
    assert str(path) in info.value.one_line()
    assert "\n" not in info.value.one_line()


def test_missing_file_and_unknown_builtin(tmp_path: Path):
    with pytest.raises(DataError, match="data file not found"):
        load_data(DataConfig(path=str(tmp_path / "nope.json")))
    with pytest.raises(DataError, match="no builtin dataset 'nope.json'"):
        load_data(DataConfig(path="builtin:nope.json"))


def test_system_prompt_is_added_only_where_missing(tmp_path: Path):
    path = write(tmp_path / "a.json", [{"instruction": "q", "output": "a"},
                                       {"instruction": "q2", "output": "a2", "system": "own"}])
    data = load_data(DataConfig(path=str(path), system_prompt="Answer in JSON."))
    assert [c.messages[0].content for c in data.conversations] == ["Answer in JSON.", "own"]


def test_split_is_stable_disjoint_and_roughly_proportional():
    data = load_data(DataConfig(path="builtin:demo_identity.json"))
    train, val = split_train_val(data.conversations, 0.1, seed=42)
    again_train, again_val = split_train_val(list(reversed(data.conversations)), 0.1, seed=42)
    assert {c.key() for c in val} == {c.key() for c in again_val}
    assert not {c.key() for c in train} & {c.key() for c in val}
    assert len(train) + len(val) == len(data.conversations) == 80
    assert 2 <= len(val) <= 16
    other_train, other_val = split_train_val(data.conversations, 0.1, seed=7)
    assert {c.key() for c in other_val} != {c.key() for c in val}


def test_demo_dataset_teaches_the_identity():
    data = load_data(DataConfig(path="builtin:demo_identity.json"))
    answers = [c.messages[-1].content for c in data.conversations]
    assert sum("tunedeck's demo assistant" in a for a in answers) >= 60
    assert not data.problems
