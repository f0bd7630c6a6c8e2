"""Nothing lost between the file and the tokens trained: tool calls, placeholders, control characters, and the
dataset_info.json chosen as a data file. On LLaMA-Factory's own demo data where it is present."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATASETS
from tunedeck.core.config import DataConfig
from tunedeck.core.config_files import load_config
from tunedeck.core.data.loading import describe_source, load_data
from tunedeck.core.data.tokenize import assistant_spans, encode_conversation
from tunedeck.core.data.tool_format import TOOLS_INTRO, ToolSupport, probe, tokenizer_render
from tunedeck.core.errors import DatasetInfoChosen
from tunedeck.core.inspect.inspect import inspect_dataset, load_rows
from tunedeck.core.inspect.prepare import prepare_dataset
from tunedeck.core.inspect.text_checks import strip_controls
from tunedeck.core.models.templates import TEMPLATES

GLAIVE = SHARED_DATASETS / "glaive_toolcall_zh_demo.json"
IDENTITY = SHARED_DATASETS / "identity.json"
INFO = SHARED_DATASETS / "dataset_info.json"
needs_shared = pytest.mark.skipif(not INFO.is_file(), reason="shared sample datasets not present")


def run_cli(cmd, *args):
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=600)


def with_template(tokenizer, name: str):
    copy = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    copy.chat_template = TEMPLATES[name].jinja
    return copy


def test_templates_say_what_they_can_show(tokenizer):
    assert probe(tokenizer_render(tokenizer)) == ToolSupport(tools=False, calls=False, results=True)  # SmolLM2
    assert probe(tokenizer_render(with_template(tokenizer, "chatml"))) == ToolSupport(False, False, True)
    assert probe(tokenizer_render(with_template(tokenizer, "llama3"))) == ToolSupport(False, False, True)
    assert probe(tokenizer_render(with_template(tokenizer, "qwen"))) == ToolSupport(True, True, True)


@needs_shared
def test_glaive_tool_calls_are_trained_in_the_fallback_form_never_as_an_empty_turn(tokenizer):
    conversations = load_rows(GLAIVE).conversations
    with_calls = [c for c in conversations if any(m.tool_calls for m in c.messages)]
    assert len(with_calls) >= 100
    for conv in with_calls:
        text, spans = assistant_spans(tokenizer, conv)
        answers = [text[start:end].removesuffix("<|im_end|>\n") for start, end in spans]
        assert len(spans) == sum(m.role == "assistant" for m in conv.messages)
        assert all(answer.strip() for answer in answers), f"row {conv.row}: an empty assistant turn is trained"
        for message in conv.messages:
            for call in message.tool_calls or []:
                name = call["function"]["name"]
                assert any(f'{{"name": "{name}", "arguments": ' in answer for answer in answers), conv.row
        if conv.tools:
            system = text[: text.index("<|im_end|>")]
            assert TOOLS_INTRO in system and all(t["function"]["name"] in system for t in conv.tools)
    first = with_calls[0]
    sample = encode_conversation(tokenizer, first, 4096)
    trained = tokenizer.decode([t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label != -100])
    assert '{"name": "generate_invoice", "arguments": {"customer_name":"约翰·多伊"' in trained


@needs_shared
def test_the_inspection_says_which_rows_use_the_fallback_and_qwen_renders_them_natively(tokenizer):
    report = inspect_dataset(GLAIVE, tokenizer=tokenizer)
    fallback = [f for f in report.findings if f.kind == "tool_format"]
    rows_with_tools = {c.row for c in load_rows(GLAIVE).conversations
                       if c.tools or any(m.tool_calls for m in c.messages)}
    assert {f.row for f in fallback} == rows_with_tools
    assert all(f.severity == "warning" and "template (auto) cannot show" in f.message and "--template qwen" in f.fix
               for f in fallback)
    native = inspect_dataset(GLAIVE, tokenizer=tokenizer, template="qwen")
    assert "tool_format" not in native.counts() and native.samples == report.samples == 300


@needs_shared
def test_preview_shows_the_call_where_the_empty_turn_was(tunedeck_cmd, tokenizer):
    result = run_cli(tunedeck_cmd, "data", "preview", GLAIVE, "--row", "0")
    assert result.returncode == 0, result.stderr
    assert "<|im_start|>assistant\n[[<|im_end|>" not in result.stdout
    assert '<|im_start|>assistant\n[[{"name": "generate_invoice", "arguments": {' in result.stdout
    assert result.stdout.startswith("<|im_start|>system\n# Tools\n")


@needs_shared
def test_identity_placeholders_are_found_counted_and_filled(tokenizer, tunedeck_cmd, tmp_path: Path):
    rows = json.loads(IDENTITY.read_text(encoding="utf-8"))
    with_name = sum("{{name}}" in json.dumps(r, ensure_ascii=False) for r in rows)
    with_author = sum("{{author}}" in json.dumps(r, ensure_ascii=False) for r in rows)
    report = inspect_dataset(IDENTITY, tokenizer=tokenizer)
    assert report.placeholders == {"name": with_name, "author": with_author} and with_name > 70
    found = [f for f in report.findings if f.kind == "placeholder"]
    assert len(found) == sum("{{" in json.dumps(r) for r in rows)
    assert all(("--fill name=..." in f.fix) == ("{{name}}" in f.message) for f in found)

    values = {"name": "Tunedeck", "author": "the tunedeck team"}
    filled = inspect_dataset(DataConfig(path=str(IDENTITY), placeholders=values), tokenizer=tokenizer)
    assert not filled.placeholders and "placeholder" not in filled.counts()
    trained = load_data(load_config(overrides=[f"data.path={IDENTITY}", "data.placeholders.name=Tunedeck",
                                               "data.placeholders.author=the tunedeck team"]).data)
    answers = [c.messages[-1].content for c in trained.conversations]
    assert not any("{{" in a for a in answers) and sum("Tunedeck" in a for a in answers) == with_name

    result = run_cli(tunedeck_cmd, "data", "preview", IDENTITY, "--row", "0", "--fill", "name=Tunedeck",
                     "--fill", "author=the tunedeck team")
    assert result.returncode == 0, result.stderr
    assert "[[Hello! I am Tunedeck, an AI assistant developed by the tunedeck team." in result.stdout
    unfilled = run_cli(tunedeck_cmd, "data", "inspect", IDENTITY)
    assert f"placeholders: {{{{name}}}} in {with_name} rows, {{{{author}}}} in {with_author} rows" in unfilled.stdout

    result = run_cli(tunedeck_cmd, "data", "prepare", IDENTITY, "--out", tmp_path / "out", "--fill", "name=Tunedeck",
                     "--fill", "author=me", "--no-tokens")
    assert result.returncode == 0, result.stderr
    written = "".join((tmp_path / "out" / f"{s}.jsonl").read_text(encoding="utf-8") for s in ("train", "validation"))
    assert "{{name}}" not in written and "Tunedeck" in written


def test_a_bad_fill_is_one_line(tunedeck_cmd, tmp_path: Path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"instruction": "hi", "output": "I am {{name}}"}]), encoding="utf-8")
    result = run_cli(tunedeck_cmd, "data", "inspect", path, "--fill", "no value")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "tunedeck: --fill: bad --fill 'no value' (give NAME=VALUE for a {{NAME}} placeholder, e.g. --fill "
        "name=Tunedeck)"]
    nothing = run_cli(tunedeck_cmd, "data", "inspect")
    assert nothing.returncode == 2 and nothing.stderr.strip() == (
        "tunedeck: no data given (give a data file, a corpus folder, or --dataset-info FILE --name ENTRY)")


CONTROLS = [
    {"instruction": "Colour \x1b[31mred\x1b[0m please", "input": "", "output": "Done."},
    {"instruction": "Hidden\u200bspace and a NUL\x00 here", "input": "", "output": "Seen."},
    {"instruction": "Order", "input": "", "output": "abc\u202edcba and \u2066isolate\u2069"},
    {"instruction": "Clean row", "input": "", "output": "Nothing odd\there,\nreally. 👨\u200d👩\u200d👧"},
]


def test_control_and_invisible_characters_are_findings_with_their_row_and_prepare_strips_them(tmp_path, tokenizer):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CONTROLS), encoding="utf-8")
    report = inspect_dataset(path, tokenizer=tokenizer)
    found = {(f.row, f.line): f.message for f in report.findings if f.kind == "control_chars"}
    assert found == {
        (0, 1): "turn 1 (user) holds 2 control or invisible characters: ESC (U+001B) x2",
        (1, 2): "turn 1 (user) holds 2 control or invisible characters: ZERO WIDTH SPACE (U+200B), NUL (U+0000)",
        (2, 3): "turn 2 (assistant) holds 3 control or invisible characters: RIGHT-TO-LEFT OVERRIDE (U+202E), "
                "LEFT-TO-RIGHT ISOLATE (U+2066), POP DIRECTIONAL ISOLATE (U+2069)",
    }
    assert all("\x1b" not in message for message in found.values())

    prepared = prepare_dataset(path, tmp_path / "out", (1.0, 0.0, 0.0), fix_text=True)
    assert prepared.controls_stripped == 7 and prepared.samples["train"] == 4
    written = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    texts = {m["content"] for row in written for m in row["messages"]}
    assert {"Colour red please", "Hiddenspace and a NUL here", "abcdcba and isolate"} <= texts
    assert "Nothing odd\there,\nreally. 👨\u200d👩\u200d👧" in texts  # tab, line break and emoji joiners kept
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["controls_stripped"] == 7
    assert strip_controls("plain") == ("plain", 0)


@needs_shared
def test_a_dataset_info_json_given_as_the_data_file_asks_for_an_entry(tunedeck_cmd):
    with pytest.raises(DatasetInfoChosen) as raised:
        load_data(DataConfig(path=str(INFO)))
    assert raised.value.entries == ["identity", "alpaca_zh_demo", "glaive_toolcall_zh_demo"]
    assert raised.value.message == "this is a dataset_info.json: choose an entry"
    result = run_cli(tunedeck_cmd, "data", "inspect", INFO)
    assert result.returncode == 2
    assert result.stderr.startswith(f"tunedeck: {INFO}: this is a dataset_info.json: choose an entry (entries with a "
                                    "file here: identity, alpaca_zh_demo, glaive_toolcall_zh_demo")


@needs_shared
def test_which_of_path_and_dataset_info_is_read_is_said(tunedeck_cmd):
    cfg = DataConfig(path="builtin:demo_identity.json", dataset_info=str(INFO), name="identity")
    assert describe_source(cfg) == (f"data: entry 'identity' of {INFO} -> {IDENTITY}; data.path "
                                    "(builtin:demo_identity.json) is not used")
    assert describe_source(DataConfig(path="rows.json")) == "data: rows.json"
    result = run_cli(tunedeck_cmd, "data", "inspect", GLAIVE, "--dataset-info", INFO, "--name", "identity")
    assert result.returncode == 2 and "is not the file of entry 'identity'" in result.stderr


def test_a_text_file_with_a_document_a_line_is_read_as_documents_and_said_so(tmp_path: Path, tokenizer):
    words = "the river bends where the old mill stood and light falls across the water".split()
    documents = [" ".join(f"{words[(d + k) % len(words)]}{'xyzw'[d]}" for k in range(120 + 40 * d)) + "."
                 for d in range(4)]  # each document's words are its own
    wiki = tmp_path / "wiki.txt"
    wiki.write_text("\n".join(documents) + "\n", encoding="utf-8")
    report = inspect_dataset(DataConfig(path=str(wiki), chunk_tokens=[40, 100]), tokenizer=tokenizer)
    assert (report.format, report.layout) == ("text", "one document per line, 4 documents")
    texts = [c.meta["text"] for c in load_rows(DataConfig(path=str(wiki), chunk_tokens=[40, 100]),
                                               tokenizer=tokenizer).conversations]
    assert report.samples == len(texts) > 4
    for text in texts:  # no chunk spans two documents, and every document is all there, in order
        assert sum(text in document for document in documents) == 1
    assert "".join(texts).replace(" ", "") == "".join(documents).replace(" ", "")
    assert [c.line for c in load_rows(str(wiki), tokenizer=tokenizer).conversations][:1] == [1]

    paragraphs = tmp_path / "essay.txt"
    paragraphs.write_text("\n\n".join(documents) + "\n", encoding="utf-8")  # blank lines: one document
    assert inspect_dataset(paragraphs, tokenizer=tokenizer).layout == "paragraphs"
    wrapped = tmp_path / "wrapped.txt"  # short lines, no blank line: hard-wrapped prose, one document
    wrapped.write_text("\n".join(" ".join(words[:8]) for _ in range(30)) + "\n", encoding="utf-8")
    assert inspect_dataset(wrapped, tokenizer=tokenizer).layout == "paragraphs"
