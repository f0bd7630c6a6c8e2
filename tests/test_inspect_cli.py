"""`tunedeck data inspect` and `tunedeck data prepare` as a user runs them: real subprocesses, exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATASETS
from tunedeck.core.data.tool_format import template_inputs
from tunedeck.core.inspect.inspect import load_rows

INFO = SHARED_DATASETS / "dataset_info.json"


def run_cli(cmd, *args):
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not INFO.is_file(), reason="shared sample datasets not present")
def test_inspect_json_reports_rows_format_and_the_tokenizers_count(tunedeck_cmd, tokenizer):
    name = "glaive_toolcall_zh_demo"
    result = run_cli(tunedeck_cmd, "data", "inspect", SHARED_DATASETS / f"{name}.json", "--dataset-info", INFO,
                     "--name", name, "--json", "--progress")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    progress = [json.loads(line) for line in result.stderr.splitlines() if line.startswith('{"done"')]
    assert progress[-1] == {"done": 300, "total": 300}
    assert (report["format"], report["rows"], report["samples"], report["template"]) == ("sharegpt", 300, 300, "auto")
    lengths = [len(tokenizer.apply_chat_template(*template_inputs(tokenizer, c.to_chat(), c.tools),
                                                 tokenize=True)["input_ids"])
               for c in load_rows("", dataset_info=INFO, name=name).conversations]
    assert report["lengths"]["total"] == sum(lengths) and report["lengths"]["max"] == max(lengths)
    assert report["lengths"]["over_cutoff"] == sum(n > 2048 for n in lengths) == report["counts"]["truncated"]
    assert {f["kind"] for f in report["findings"]} <= set(report["counts"])


def test_inspect_lists_findings_with_file_and_line_and_exits_1_on_errors(tmp_path: Path, tunedeck_cmd, tokenizer):
    path = tmp_path / "chat.jsonl"
    path.write_text('{"instruction": "Hi", "output": "Hello"}\n{"instruction": "Hi", "output": \n'
                    '{"instruction": "Bye", "output": ""}\n', encoding="utf-8")
    result = run_cli(tunedeck_cmd, "data", "inspect", path, "--cutoff", "64")
    assert result.returncode == 1, result.stderr
    assert f"{path}: alpaca, 3 rows, 1 trainable samples" in result.stdout
    assert f"{path}:2: error: schema: invalid JSON" in result.stdout
    assert f"{path}:3: error: empty_turn: turn 2 (assistant) is empty" in result.stdout
    assert "cutoff 64: 0 samples longer" in result.stdout


def test_unreadable_file_exits_2_with_one_line_naming_file_line_and_fix(tmp_path: Path, tunedeck_cmd):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n',
                      encoding="utf-8")
    result = run_cli(tunedeck_cmd, "data", "inspect", broken)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tunedeck: {broken}:3: invalid JSON at line 3 column 23: Expecting ',' delimiter "
        "(fix the JSON there; for one object per line, name the file .jsonl)"]
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"instruction": "ok", "output": "ok"}\n{"instruction": "caf\xe9", "output": "x"}\n')
    result = run_cli(tunedeck_cmd, "data", "inspect", latin)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"{latin}:2: not UTF-8 (byte 0xe9 at line 2) (re-save the file as UTF-8" in result.stderr


def test_prepare_writes_splits_and_stats(tmp_path: Path, tunedeck_cmd):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(200))
                      + '{"instruction": "q0", "output": "a0"}\n', encoding="utf-8")
    out = tmp_path / "prepared"
    result = run_cli(tunedeck_cmd, "data", "prepare", source, "--out", out, "--split", "0.8,0.2", "--dedupe",
                     "--no-tokens")
    assert result.returncode == 0, result.stderr
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["samples"]["train"] + stats["samples"]["validation"] == 200 and stats["samples"]["test"] == 0
    assert stats["duplicates_dropped"] == 1 and not (out / "test.jsonl").exists()
    assert "1 duplicates dropped" in result.stdout


def test_preview_marks_trained_and_cut_text(tmp_path: Path, tunedeck_cmd, tokenizer):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"instruction": "Who are you?", "output": "A small demo model. " * 8}) + "\n",
                    encoding="utf-8")
    result = run_cli(tunedeck_cmd, "data", "preview", path, "--row", "0", "--cutoff", "40", "--json")
    assert result.returncode == 0, result.stderr
    segments = json.loads(result.stdout)
    text = "".join(s["text"] for s in segments)
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>user\nWho are you?<|im_end|>" in text
    assert [s["trained"] for s in segments] == [False, True, True] and [s["cut"] for s in segments] == [False,
                                                                                                         False, True]
    assert segments[1]["text"].startswith("A small demo model.") and segments[2]["text"].endswith("<|im_end|>\n")
