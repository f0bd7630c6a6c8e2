"""Batch evaluation end to end on a tiny model with a real (random, non-zero) LoRA adapter: worker, CLI, files."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
from pathlib import Path

import pytest

from tunedeck.core.config_files import load_config
from tunedeck.core.data.conversation import Conversation, Message
from tunedeck.core.data.loading import load_data
from tunedeck.core.data.tokenize import encode_conversation
from tunedeck.core.evaluate.heldout import as_held_out, load_held_out
from tunedeck.core.evaluate.job import start_eval
from tunedeck.core.evaluate.layout import EvalLayout, EvalRequest
from tunedeck.core.evaluate.recipe import _prompt_text, eval_losses, load_model
from tunedeck.core.jobs.runs import RunDir, create_run
from tunedeck.core.stream.events import EvalFinished, EvalProgress, EvalStarted, read_events

from .conftest import save_nonzero_adapter

TRAIN = [{"instruction": f"What is {a} plus {a}?", "input": "", "output": f"{a} plus {a} is {2 * a}."}
         for a in range(8)]
HELD_OUT = [
    {"instruction": "What is 20 plus 20?", "input": "", "output": "20 plus 20 is 40."},
    {"instruction": "Rate this answer from 0 to 10: 'Paris is in France.'", "input": "",
     "output": '{"score": 9, "label": "correct"}'},
    {"instruction": "请介绍一下你自己。", "input": "", "output": "我是一个小模型，喜欢回答问题。"},
    {"instruction": "Rate this answer from 0 to 10: 'The sun is cold.'", "input": "",
     "output": '{"score": 1, "label": "wrong"}'},
    {"instruction": "Say hello.", "input": "", "output": "Hello!"},
]


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir: Path, tmp_path_factory) -> RunDir:
    """A run on the tiny model with a separate validation file and a random LoRA adapter (it changes outputs)."""
    root = tmp_path_factory.mktemp("eval-run")
    (root / "train.json").write_text(json.dumps(TRAIN), encoding="utf-8")
    (root / "held_out.json").write_text(json.dumps(HELD_OUT, ensure_ascii=False), encoding="utf-8")
    config = load_config(overrides=[f"model.name_or_path={tiny_model_dir}", f"data.path={root / 'train.json'}",
                                    f"data.val_path={root / 'held_out.json'}", "data.cutoff_len=96"])
    run = create_run(root / "runs", config, "tiny")
    save_nonzero_adapter(run, tiny_model_dir, precision="fp32")
    return run


def test_held_out_rows_default_to_the_validation_split_the_run_did_not_train_on(tmp_path: Path):
    rows = [{"instruction": f"Question number {i}?", "input": "", "output": f"Answer {i}."} for i in range(40)]
    (tmp_path / "d.json").write_text(json.dumps(rows), encoding="utf-8")
    config = load_config(overrides=[f"data.path={tmp_path / 'd.json'}", "data.val_size=0.25"])
    source, held_out = load_held_out(config)
    assert "validation split" in source and 4 <= len(held_out) <= 18
    questions = {r.question for r in held_out}
    assert {r["instruction"] for r in rows} >= questions
    assert all(r.reference == f"Answer {r.question.split()[-1][:-1]}." for r in held_out)
    # the same rows every time (the split is a stable hash), and a cap keeps the first ones
    assert [r.question for r in load_held_out(config)[1]] == [r.question for r in held_out]
    assert [r.question for r in load_held_out(config, max_rows=2)[1]] == [r.question for r in held_out[:2]]
    assert len(load_data(config.data).conversations) == 40


@pytest.mark.slow
def test_worker_writes_predictions_csv_and_metrics_for_both_models(tiny_run: RunDir):
    proc = start_eval(tiny_run, EvalRequest(compare_base=True, max_new_tokens=6, batch_size=2))
    assert proc.wait(timeout=600) == 0, EvalLayout.for_run(tiny_run).log_path.read_text()[-3000:]
    layout = EvalLayout.for_run(tiny_run)

    events = list(read_events(layout.events_path))
    assert isinstance(events[0], EvalStarted) and events[0].rows == 5
    assert events[0].phases == ["loss", "generate", "base_loss", "base_generate"]
    finals = {(e.phase, e.done) for e in events if isinstance(e, EvalProgress) and e.done == e.total}
    assert finals == {(p, 5) for p in events[0].phases}
    assert isinstance(events[-1], EvalFinished) and events[-1].status == "completed"

    records = [json.loads(line) for line in layout.predictions_jsonl.read_text(encoding="utf-8").splitlines()]
    assert [r["reference"] for r in records] == [row["output"] for row in HELD_OUT]
    assert [r["prompt"] for r in records] == [row["instruction"] for row in HELD_OUT]
    for record in records:
        assert {"prediction", "base_prediction", "loss", "base_loss", "metrics", "base_metrics"} <= record.keys()
        assert record["loss"] != record["base_loss"]  # the adapter is applied, and switched off for the base
    assert "json_valid" in records[1]["metrics"] and "json_valid" not in records[0]["metrics"]
    assert set(records[3]["metrics"]["fields"]) == {"score", "label"}

    with open(layout.predictions_csv, encoding="utf-8-sig", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["reference"] for row in table] == [row["output"] for row in HELD_OUT]
    assert table[2]["prompt"] == "请介绍一下你自己。" and "base_prediction" in table[0]

    metrics = json.loads(layout.metrics.read_text(encoding="utf-8"))
    assert metrics["rows"] == 5 and "validation file" in metrics["source"] and metrics["max_new_tokens"] == 6
    for side in ("finetuned", "base"):
        m = metrics[side]
        assert m["json_rows"] == 2 and m["rows"] == 5
        assert math.isclose(m["perplexity"], math.exp(m["eval_loss"]), rel_tol=1e-3)
        for key in ("bleu4", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match", "json_valid_rate"):
            assert 0.0 <= m[key] <= 1.0
    assert metrics["finetuned"]["tokens"] == metrics["base"]["tokens"] > 0
    assert metrics["finetuned"]["eval_loss"] != metrics["base"]["eval_loss"]
    # how the numbers were computed: one Chinese reference makes it sacrebleu's tok:zh and jieba words for ROUGE
    assert metrics["language"]["code"] == "zh" and "tok:zh" in metrics["signature"]["bleu"]
    assert metrics["signature"]["bleu"].endswith(f"version:{metrics['versions']['sacrebleu']}")
    assert metrics["versions"]["rouge-score"] and metrics["task"]["kind"] == "free_text"
    loss = metrics["intervals"]["metrics"]["eval_loss"]
    assert loss["difference"] == pytest.approx(metrics["finetuned"]["eval_loss"] - metrics["base"]["eval_loss"],
                                               abs=1e-4)
    assert loss["low"] <= loss["difference"] <= loss["high"] and metrics["intervals"]["resamples"] == 1000
    assert {"bleu4", "chrf", "rougeL", "exact_match", "json_valid_rate"} <= metrics["intervals"]["metrics"].keys()
    assert "chrf" in records[0]["metrics"] and "compat" not in metrics


@pytest.mark.slow
def test_batched_loss_matches_one_row_at_a_time_and_the_plain_base_model(tiny_run: RunDir, tiny_model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_run.load_config()
    model, tokenizer, precision = load_model(config, tiny_run.adapter)
    assert precision == "fp32"
    _, rows = load_held_out(config)
    samples = [encode_conversation(tokenizer, r.conversation, config.data.cutoff_len) for r in rows]
    batched = eval_losses(model, samples, 4, lambda done, total: None)  # padded: rows of different lengths
    single = eval_losses(model, samples, 1, lambda done, total: None)
    for (a, n), (b, m) in zip(batched, single, strict=True):
        assert n == m and a == pytest.approx(b, rel=1e-4)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        sample = samples[0]
        expected = float(plain(input_ids=torch.tensor([sample.input_ids]),
                               labels=torch.tensor([sample.labels])).loss)
        with model.disable_adapter():
            nll, count = eval_losses(model, samples[:1], 1, lambda done, total: None)[0]
    assert nll / count == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_cli_prints_a_table_side_by_side_and_refuses_bad_input_in_one_line(tiny_run: RunDir, tunedeck_cmd):
    runs = str(tiny_run.path.parent)
    result = subprocess.run([*tunedeck_cmd, "eval", tiny_run.run_id, "--runs-dir", runs, "--compare-base",
                             "--max-rows", "3", "--max-new-tokens", "4", "--compat", "llamafactory"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "evaluating 3 rows" in result.stderr and "generate: 3/3 rows" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("task: ")
    assert re.split(r"\s{2,}", lines[2].strip()) == ["metric", "fine-tuned", "base", "difference (95% CI)", "why"]
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[3:]]
    table = {row[0]: row[1:3] for row in cells if len(row) >= 4}
    assert {"eval loss", "perplexity", "chrF", "ROUGE-L F1", "exact match", "JSON valid"} <= table.keys()
    metrics = json.loads(EvalLayout.for_run(tiny_run).metrics.read_text(encoding="utf-8"))
    assert metrics["rows"] == 3 and table["eval loss"] == [f"{metrics['finetuned']['eval_loss']:.4f}",
                                                           f"{metrics['base']['eval_loss']:.4f}"]
    compat = metrics["compat"]["llamafactory"]
    assert table["LLaMA-Factory ROUGE-L"] == [f"{compat['finetuned']['predict_rouge-l']:.2f}",
                                              f"{compat['base']['predict_rouge-l']:.2f}"]
    assert f"BLEU: {metrics['signature']['bleu']}" in lines and any(line.startswith("intervals: ") for line in lines)
    assert any(" on eval loss " in line for line in lines)  # the verdict sentence

    for args, expected in ((["--data", "missing.json"], "missing.json"), (["--checkpoint", "7"], "checkpoint")):
        bad = subprocess.run([*tunedeck_cmd, "eval", tiny_run.run_id, "--runs-dir", runs, *args],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and expected in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_stopping_the_worker_ends_the_evaluation_after_the_current_batch(tiny_run: RunDir):
    import time

    proc = start_eval(tiny_run, EvalRequest(compare_base=True, max_new_tokens=64, batch_size=1))
    layout = EvalLayout.for_run(tiny_run)
    deadline = time.monotonic() + 300
    while not any(isinstance(e, EvalProgress) for e in read_events(layout.events_path)):
        assert proc.poll() is None and time.monotonic() < deadline, layout.log_path.read_text()[-3000:]
        time.sleep(0.1)
    assert layout.stop()
    assert proc.wait(timeout=300) == 130
    events = list(read_events(layout.events_path))
    assert isinstance(events[-1], EvalFinished) and events[-1].status == "stopped"
    assert sum(isinstance(e, EvalProgress) for e in events) < 20  # 5 rows x 4 phases, one row per batch
    assert layout.read_status()["status"] == "stopped"


def test_held_out_text_and_tool_calls_are_asked_as_they_were_trained(tmp_path: Path, tokenizer):
    text = "The river bends where the old mill stood. Every morning light falls across the water."
    row = as_held_out(Conversation([], 0, meta={"text": text}))
    assert row.text_prompt + row.reference == text and row.question == row.text_prompt
    assert 0 < len(row.text_prompt) <= len(text) // 2 + 1 and row.reference.startswith(" ")
    assert _prompt_text(tokenizer, row) == row.text_prompt  # SmolLM2 adds no BOS: the text as trained, no template

    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 2}}}
    conv = Conversation([Message("user", "add"), Message("assistant", "", [call])], 0,
                        tools=[{"type": "function", "function": {"name": "add", "parameters": {}}}])
    row = as_held_out(conv)
    assert row.reference == '{"name": "add", "arguments": {"a":2}}'
    prompt = _prompt_text(tokenizer, row)
    assert prompt.startswith("<|im_start|>system\n# Tools\n") and prompt.endswith("<|im_start|>assistant\n")
