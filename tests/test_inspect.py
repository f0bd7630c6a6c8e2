"""Dataset inspection with SmolLM2's real tokenizer: formats, every lint, exact lengths, previews and splits."""

from __future__ import annotations

import copy
import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATASETS
from tunedeck.core.data.conversation import Conversation, Message
from tunedeck.core.data.tokenize import IGNORE_INDEX, encode_conversation
from tunedeck.core.data.tool_format import template_inputs
from tunedeck.core.inspect.duplicates import near_duplicates, shingles, signatures
from tunedeck.core.inspect.fast_render import ChatRenderer, copies_text_verbatim
from tunedeck.core.inspect.inspect import InspectCancelled, inspect_dataset, load_rows
from tunedeck.core.inspect.lengths import TokenCounter, measure
from tunedeck.core.inspect.prepare import parse_split, prepare_dataset
from tunedeck.core.inspect.preview import render_sample
from tunedeck.core.inspect.text_checks import find_pii, fix_encoding, redact
from tunedeck.core.models.templates import TEMPLATES

INFO = SHARED_DATASETS / "dataset_info.json"
needs_shared = pytest.mark.skipif(not INFO.is_file(), reason="shared sample datasets not present")


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def chat(*pairs, tools=None, row=0) -> Conversation:
    return Conversation([Message(role, text) for role, text in pairs], row=row, tools=tools)


def plain_length(tokenizer, conv: Conversation, template: str | None = None) -> int:
    """The direct count: apply_chat_template + tokenize, one row at a time, of what the template receives (tools
    and calls it cannot show in the fallback form)."""
    def render(messages, tools, generation_prompt):
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, chat_template=template,
                                             add_generation_prompt=generation_prompt)

    render.chat_template = template or tokenizer.chat_template
    messages, tools = template_inputs(tokenizer, conv.to_chat(), conv.tools, render)
    return len(tokenizer(render(messages, tools, False), add_special_tokens=False)["input_ids"])


@needs_shared
@pytest.mark.parametrize(("name", "fmt", "rows"), [("alpaca_zh_demo", "alpaca", 1000), ("identity", "alpaca", 91),
                                                   ("glaive_toolcall_zh_demo", "sharegpt", 300)])
def test_shared_datasets_counts_formats_and_lengths_match_a_direct_count(tokenizer, name, fmt, rows):
    report = inspect_dataset(SHARED_DATASETS / f"{name}.json", dataset_info=INFO, name=name, tokenizer=tokenizer)
    assert (report.format, report.rows, report.samples) == (fmt, rows, rows)
    assert report.rows == len(json.loads((SHARED_DATASETS / f"{name}.json").read_text(encoding="utf-8")))
    convs = load_rows("", dataset_info=INFO, name=name).conversations
    assert report.lengths.lengths == [plain_length(tokenizer, c) for c in convs]
    assert report.lengths.rows == list(range(rows))
    if name != "alpaca_zh_demo":  # trained-token counts equal training's own masks (slow path: 3 renders a row)
        expected = [encode_conversation(tokenizer, c, 2048).trained_tokens for c in convs]
        assert report.lengths.trained == expected
    if name == "glaive_toolcall_zh_demo":
        assert report.roles["tool"] > 0 and report.lengths.over_cutoff == sum(n > 2048 for n in report.lengths.lengths)
        assert report.counts()["truncated"] == report.lengths.over_cutoff


def test_malformed_file_names_each_bad_row_and_line(tmp_path, tokenizer):
    mojibake = "Le café est prêt".encode().decode("latin-1")
    good = {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [
        good,                                                                                       # line 1
        '{"messages": [{"role": "user", "content": "broken"}',                                      # 2 bad JSON
        {"conversation": []},                                                                       # 3 missing
        {"messages": [{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Hey"},
                      {"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Yes."}]},  # 4 order
        {"messages": [{"role": "user", "content": mojibake}, {"role": "assistant", "content": "Oui."}]},  # 5
        {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "   "}]},  # 6 empty
        good,                                                                                       # 7 duplicate
        {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Red."}]},
        {"messages": [{"role": "user", "content": "Mail me at ann.lee@example.org or +1 415-555-0132"},
                      {"role": "assistant", "content": "Noted."}]},                                 # 9 pii
        {"messages": [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Score it"},
                      {"role": "assistant", "content": '{"score": 7,}'}]},                          # 10 json
        {"messages": [{"role": "user", "content": "Only a question"}]},                            # 11 no answer
    ])
    report = inspect_dataset(path, tokenizer=tokenizer)
    assert (report.format, report.rows) == ("openai", 11)
    found = {(f.kind, f.line, f.severity) for f in report.findings}
    for expected in [("schema", 2, "error"), ("schema", 3, "error"), ("role_order", 4, "warning"),
                     ("encoding", 5, "warning"), ("empty_turn", 6, "error"), ("duplicate", 7, "warning"),
                     ("conflict", 8, "warning"), ("pii", 9, "warning"), ("json_invalid", 10, "error"),
                     ("role_order", 11, "error")]:
        assert expected in found, expected
    by_line = {(f.kind, f.line): f for f in report.findings}
    assert by_line[("encoding", 5)].fix == "Le café est prêt"
    assert by_line[("duplicate", 7)].other_row == 0 and by_line[("conflict", 8)].other_row == 0
    assert "two user turns in a row" in " ".join(f.message for f in report.for_row(3))
    assert "invalid JSON" in by_line[("schema", 2)].message and "conversation" not in by_line[("schema", 3)].message
    assert by_line[("schema", 2)].where(report.source) == f"{path}:2"
    assert report.samples == 7  # every row but the two unreadable ones and the two without an answer
    assert not {f.line for f in report.findings} & {1}


def test_duplicates_near_duplicates_and_conflicts():
    rng = random.Random(1)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(500)]
    words[0] = "river"
    long = "river " + " ".join(rng.choice(words) for _ in range(120))
    edited = long.replace("river", "ocean", 1)
    convs = [chat(("user", "Summarise"), ("assistant", long), row=0),
             chat(("user", "Tell a story"), ("assistant", " ".join(rng.choice(words) for _ in range(120))), row=1),
             chat(("user", "Summarise"), ("assistant", edited), row=2),
             chat(("user", "Something else entirely, about cooking rice."), ("assistant", "Rinse it first."), row=3)]
    assert near_duplicates(convs) == [(2, 0)]
    hashes, rows = shingles([" ".join(m.content for m in c.messages) for c in convs])
    sig = signatures(hashes, rows, len(convs))
    assert np.mean(sig[0] == sig[2]) > 0.8 and np.mean(sig[0] == sig[1]) < 0.5


def test_minhash_signatures_equal_datasketch():
    from datasketch import MinHash

    texts = ["the quick brown fox jumps over the lazy dog " * 3, "短文本", "x" * 40]
    hashes, rows = shingles(texts)
    sig = signatures(hashes, rows, len(texts))
    for index in range(len(texts)):
        reference = MinHash(num_perm=64, seed=1, hashfunc=int)
        reference.update_batch([int(h) for h in hashes[rows == index]])
        assert sig[index].tolist() == reference.hashvalues.tolist()


def test_mojibake_is_repaired_and_clean_text_left_alone():
    for original in ("naïve café — “quoted”", "北京欢迎你", "Straße"):
        assert fix_encoding(original.encode().decode("latin-1")) == original
        assert fix_encoding(original) is None
    assert fix_encoding("The â€œbestâ€\x9d cafÃ©") == "The “best” café"


def test_pii_found_and_redacted_without_false_alarms():
    text = ("Reach me: li.wei@mail.cn, 13812345678, server 10.0.0.12, ID 11010519491231002X, SSN 123-45-6789, "
            "call (415) 555-0132.")
    kinds = sorted(kind for kind, _ in find_pii(text))
    assert kinds == ["email", "id_card", "id_card", "ip", "phone", "phone"]
    redacted, count = redact(text)
    assert count == 6 and "[EMAIL]" in redacted and "10.0.0.12" not in redacted and "[ID]" in redacted
    assert find_pii("version 1.2.3, 3.14159, in 2024 we sold 1,000,000 units; ID 110105194912310021") == []


def test_json_answers_checked_when_they_must_be_json(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "json.jsonl", [
        {"messages": [{"role": "system", "content": "Reply with JSON only."}, {"role": "user", "content": "a"},
                      {"role": "assistant", "content": '{"ok": true}'}]},
        {"messages": [{"role": "user", "content": "b"}, {"role": "assistant", "content": '[1, 2'}]},
        {"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "I am {{name}}."}]},
        {"messages": [{"role": "user", "content": "d"}, {"role": "assistant", "content": "```json\n{'a': 1}\n```"}]},
    ])
    report = inspect_dataset(path, tokenizer=tokenizer)
    assert [f.line for f in report.findings if f.kind == "json_invalid"] == [2, 4]


def test_openai_parquet_and_csv_are_read(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"Q{i}", "input": "", "output": f"A{i}"} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    report = inspect_dataset(tmp_path / "d.parquet", tokenizer=tokenizer)
    assert (report.format, report.rows, report.samples) == ("alpaca", 5, 5)
    (tmp_path / "d.csv").write_text("instruction,input,output\nQ1,,A1\nQ2,x,A2\n", encoding="utf-8")
    report = inspect_dataset(tmp_path / "d.csv", tokenizer=tokenizer)
    assert (report.format, report.rows) == ("alpaca", 2)
    assert report.lengths.lengths == [plain_length(tokenizer, c) for c in load_rows(tmp_path / "d.csv").conversations]


ODD = [" ", "  ", "\n", "\n\n", "\t", " \n", "\n ", "\u00a0", "\u3000", "\x1c", "\x85", "\u2028", "'s", "'S",
       "é", "中文", "😀", "123", "1 2", "!!", "<|im_end|>", "<|im_start|>", "Hello", "world", "  x", "\r\n", "-"]


@pytest.mark.parametrize("template", [None, "chatml", "qwen", "llama3"])
def test_fast_lengths_and_masks_equal_training_on_odd_text(tokenizer, template):
    rng = random.Random(7)
    tok = copy.deepcopy(tokenizer)
    if template:
        tok.chat_template = TEMPLATES[template].jinja
    convs = []
    for row in range(150):
        def text():
            return "".join(rng.choice(ODD) for _ in range(rng.randint(0, 12)))
        turns = [("system", text())] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 3)):
            turns += [("user", text() or "q"), ("assistant", text() or "a")]
        convs.append(chat(*turns, row=row))
    samples = measure(tok, convs, cutoff=40)
    render = ChatRenderer(tok)
    for conv, sample in zip(convs, samples, strict=True):
        encoded = encode_conversation(tok, conv, 40)
        assert render(conv.to_chat(), None, False) == tok.apply_chat_template(conv.to_chat(), tokenize=False)
        assert (sample.length, sample.trained) == (encoded.full_length, encoded.trained_tokens), conv
        assert sample.length == plain_length(tok, conv)


def test_fast_counter_is_used_for_smollm2(tokenizer):
    assert TokenCounter(tokenizer).fast
    assert copies_text_verbatim(ChatRenderer(tokenizer).template.environment, tokenizer.chat_template)
    env = ChatRenderer(tokenizer).template.environment
    assert not copies_text_verbatim(env, TEMPLATES["llama3"].jinja)  # it trims the text
    assert not copies_text_verbatim(env, "{% for m in messages %}{% if 'x' in m['content'] %}y{% endif %}{% endfor %}")
    assert copies_text_verbatim(env, TEMPLATES["chatml"].jinja)


def test_render_sample_marks_trained_and_cut_tokens_like_training(tokenizer):
    conv = chat(("user", "Who are you?"), ("assistant", "A demo."), ("user", "Sure?"), ("assistant", "Yes."))
    segments = render_sample(conv, tokenizer, cutoff=10_000)
    text = "".join(s.text for s in segments)
    assert text == tokenizer.apply_chat_template(conv.to_chat(), tokenize=False)
    assert [s.text for s in segments if s.trained] == ["A demo.<|im_end|>\n", "Yes.<|im_end|>\n"]
    assert not any(s.cut for s in segments)
    encoded = encode_conversation(tokenizer, conv, 40)
    cut = render_sample(conv, tokenizer, cutoff=40)
    assert "".join(s.text for s in cut) == text and cut[-1].cut and not cut[0].cut
    kept_trained = "".join(s.text for s in cut if s.trained and not s.cut)
    assert kept_trained == tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX])


def test_progress_and_cancel(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3000)])
    seen = []
    inspect_dataset(path, tokenizer=tokenizer, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3000, 3000) and all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InspectCancelled):
        inspect_dataset(path, tokenizer=tokenizer, cancel=cancel)


FORK_CHECK = """
import json, sys
from pathlib import Path
from tunedeck.core.inspect import rows as row_work
from tunedeck.core.inspect.inspect import inspect_dataset, load_inspect_tokenizer

path, tokenizer = Path(sys.argv[1]), load_inspect_tokenizer(None)
sequential = inspect_dataset(path, tokenizer=tokenizer, cutoff=48)
row_work.PARALLEL_FROM = 1000
processes = row_work._processes(9000)
parallel = inspect_dataset(path, tokenizer=tokenizer, cutoff=48)
print(json.dumps({"processes": processes, "same": parallel.to_json() == sequential.to_json(),
                  "lengths": parallel.lengths.lengths == sequential.lengths.lengths,
                  "trained": parallel.lengths.trained == sequential.lengths.trained,
                  "over": parallel.lengths.over_cutoff,
                  "dup": [f.row for f in parallel.findings if f.kind == "duplicate"]}))
"""


def test_large_files_use_every_cpu_with_the_same_report(tmp_path, tokenizer):
    # A fresh process: forking is only used when no other thread runs, which a long test session cannot promise.
    import os
    import subprocess
    import sys

    rng = random.Random(3)
    lines = [{"instruction": f"Question {i}: " + " ".join(rng.choice(ODD[12:]) for _ in range(20)),
              "output": f"Answer {i % 900}" + " word" * rng.randint(0, 60)} for i in range(9000)]
    lines[5000] = dict(lines[10])
    path = write_jsonl(tmp_path / "big.jsonl", lines)
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: no processes to fork")
    done = subprocess.run([sys.executable, "-c", FORK_CHECK, str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["processes"] >= 2
    assert result["same"] and result["lengths"] and result["trained"]
    assert 5000 in result["dup"] and result["over"] > 0


def test_prepare_splits_deterministically_by_content(tmp_path, tokenizer):
    rows = [{"instruction": f"question {i}", "input": "", "output": f"answer {i}"} for i in range(2000)]
    rows.append({"instruction": "mail", "input": "", "output": "write to bob@example.com"})
    source = tmp_path / "data.json"
    source.write_text(json.dumps(rows), encoding="utf-8")
    first = prepare_dataset(source, tmp_path / "a", (0.8, 0.1, 0.1), redact_pii=True, tokenizer=tokenizer)
    assert sum(first.samples.values()) == 2001 and first.redacted == 1
    for split, share in zip(("train", "validation", "test"), (0.8, 0.1, 0.1), strict=True):
        assert abs(first.samples[split] / 2001 - share) < 0.03
    shuffled = list(reversed(rows))
    source.write_text(json.dumps(shuffled), encoding="utf-8")
    prepare_dataset(source, tmp_path / "b", (0.8, 0.1, 0.1), redact_pii=True)

    def contents(folder: Path, split: str) -> set[str]:
        return {line for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()}

    for split in ("train", "validation", "test"):
        assert contents(tmp_path / "a", split) == contents(tmp_path / "b", split)
    assert "[EMAIL]" in (tmp_path / "a" / "train.jsonl").read_text() + (tmp_path / "a" / "test.jsonl").read_text() + \
        (tmp_path / "a" / "validation.jsonl").read_text()
    stats = json.loads((tmp_path / "a" / "stats.json").read_text(encoding="utf-8"))
    assert stats["samples"] == first.samples and stats["tokens"]["train"]["count"] == first.samples["train"]
    again = load_rows(tmp_path / "a" / "train.jsonl")
    assert again.format == "openai" and len(again.conversations) == first.samples["train"]
    assert parse_split("0.9,0.1") == (0.9, 0.1, 0.0)
    with pytest.raises(Exception, match="add up to 1"):
        parse_split("0.9,0.2")


def test_rows_without_any_text_are_reported_not_crashed_on(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "empty.jsonl", [{"instruction": "", "output": ""}] * 3)
    report = inspect_dataset(path, tokenizer=tokenizer)
    assert (report.rows, report.samples) == (3, 0) and report.lengths.summary()["count"] == 0
    assert {(f.kind, f.line) for f in report.findings} >= {("empty_turn", 1), ("duplicate", 2), ("duplicate", 3)}
