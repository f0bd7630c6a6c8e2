"""Both sets of scores on one fixed set of predictions, against values worked out by hand: tunedeck's own (sacrebleu,
rouge-score) and the LLaMA-Factory-compatible ones (`--compat llamafactory`), and neither downloads anything."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tunedeck.core.evaluate.compat import llamafactory_scores, row_scores
from tunedeck.core.evaluate.scoring import SideAnswers, score_evaluation

REFERENCES = ["我喜欢自然语言处理", "你好世界", "Hello world", "好的"]
PREDICTIONS = ["我喜欢处理自然语言", "世界你好", "hello", ""]

# LLaMA-Factory's BLEU-4: NLTK sentence_bleu over characters (spaces and case kept), smoothing method 3
# (the k-th order with no match counts 1 / (2^k * n-grams in the answer)); x100, rounded to 4 decimals per row.
# Row 1, 9 characters each: 1-grams 9/9; 2-grams 我喜 喜欢 自然 然语 语言 处理: 6/8; 3-grams 我喜欢 自然语 然语言: 3/7;
#        4-grams 自然语言: 1/6; equal length.
BLEU_1 = round(100 * (1 * 6 / 8 * 3 / 7 * 1 / 6) ** 0.25, 4)  # 48.1098
# Row 2, 你好世界 / 世界你好: 1-grams 4/4; 2-grams 世界 你好: 2/3; 3-grams 0/2 -> 1/(2*2); 4-grams 0/1 -> 1/(4*1).
BLEU_2 = round(100 * (1 * 2 / 3 * 1 / 4 * 1 / 4) ** 0.25, 4)  # 45.1801
# Row 3, "Hello world" (11 characters) / "hello" (5): 1-grams e l l o (h is not H): 4/5; 2-grams el ll lo: 3/4;
#        3-grams ell llo: 2/3; 4-grams ello: 1/2; brevity exp(1 - 11/5).
BLEU_3 = round(100 * math.exp(1 - 11 / 5) * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, 4)  # 20.1421
# Row 4: an empty answer scores 0.
# ROUGE (rouge-chinese on jieba words; n-grams counted once; F = 2PR / (P + R + 1e-8)), x100, 4 decimals:
# Row 1: 我 喜欢 自然语言 处理 / 我 喜欢 处理 自然语言: ROUGE-1 4/4 -> 100.0; ROUGE-2 (我 喜欢) 1/3 each -> 33.3333;
#        ROUGE-L LCS 我 喜欢 自然语言 3/4 -> 75.0.
# Row 2: 你好 世界 / 世界 你好: ROUGE-1 100.0; ROUGE-2 0; ROUGE-L LCS 1 of 2 -> 50.0.
# Row 3: Hello world / hello: case kept, nothing in common -> 0. Row 4: no words -> 0.
LLAMAFACTORY = {
    "predict_bleu-4": (BLEU_1 + BLEU_2 + BLEU_3 + 0) / 4,
    "predict_rouge-1": (100.0 + 100.0 + 0 + 0) / 4,
    "predict_rouge-2": (33.3333 + 0 + 0 + 0) / 4,
    "predict_rouge-l": (75.0 + 50.0 + 0 + 0) / 4,
}


def test_llamafactory_scores_by_hand():
    assert [BLEU_1, BLEU_2, BLEU_3] == [48.1098, 45.1801, 20.1421]
    assert row_scores(REFERENCES[0], PREDICTIONS[0]) == {
        "predict_bleu-4": BLEU_1, "predict_rouge-1": 100.0, "predict_rouge-2": 33.3333, "predict_rouge-l": 75.0}
    assert row_scores(REFERENCES[3], "") == dict.fromkeys(LLAMAFACTORY, 0.0)
    scores = llamafactory_scores(REFERENCES, PREDICTIONS)
    assert scores == {key: pytest.approx(value, abs=1e-9) for key, value in LLAMAFACTORY.items()}


def test_tunedecks_own_scores_on_the_same_predictions_by_hand():
    tuned, extra = score_evaluation(REFERENCES, {"finetuned": SideAnswers(PREDICTIONS)}, 1.0, compat="llamafactory")
    summary = tuned["finetuned"]["summary"]
    assert extra["language"]["code"] == "zh" and "tok:zh" in extra["signature"]["bleu"]
    # sacrebleu tok:zh: one token per Chinese character, Latin words as 13a does ("Hello world" -> Hello, world).
    # Corpus counts: 1-grams 9+4+0 of 9+4+1 (hello != Hello): 13/14; 2-grams 6+2 of 8+3: 8/11; 3-grams 3+0 of 7+2: 3/9;
    # 4-grams 1+0 of 6+1: 1/7; 14 tokens against 9+4+2+2 = 17: BP = exp(1 - 17/14).
    bleu = math.exp(1 - 17 / 14) * (13 / 14 * 8 / 11 * 3 / 9 * 1 / 7) ** 0.25
    assert summary["bleu4"] == pytest.approx(bleu, abs=1e-6)
    # rouge-score on jieba words, lower-cased, with repeated words counted (plain F1, no epsilon):
    # rows ROUGE-1: 1, 1, hello vs hello world 2/3, 0; ROUGE-L: 3/4, 1/2, 2/3, 0.
    assert summary["rouge1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4, abs=1e-6)
    assert summary["rougeL"] == pytest.approx((3 / 4 + 1 / 2 + 2 / 3 + 0) / 4, abs=1e-6)
    # the two families differ on row 3 alone: rouge-score folds case, rouge-chinese does not
    assert extra["compat"]["llamafactory"]["finetuned"] == {k: pytest.approx(v, abs=1e-9)
                                                           for k, v in LLAMAFACTORY.items()}
    assert "intervals" not in extra  # one model: nothing to compare


def test_scoring_downloads_nothing_and_reads_no_nltk_data(tmp_path: Path):
    """Every network connection refused, NLTK pointed at an empty folder: the scores are still computed."""
    script = textwrap.dedent(f"""
        import json, socket
        def refuse(*args, **kwargs):
            raise OSError("network refused by the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from tunedeck.core.evaluate.scoring import SideAnswers, score_evaluation
        refs = {REFERENCES!r} + ["The cat is on the mat.\\nIt sleeps."]
        preds = {PREDICTIONS!r} + ["the cat sat on the mat\\nit sleeps"]
        sides = {{"finetuned": SideAnswers(preds, [(1.0, 2)] * 5), "base": SideAnswers(refs[::-1], [(2.0, 2)] * 5)}}
        scored, extra = score_evaluation(refs, sides, 1.0, compat="llamafactory")
        print(json.dumps({{"rougeLsum": scored["finetuned"]["summary"]["rougeLsum"],
                           "compat": extra["compat"]["llamafactory"]["finetuned"]["predict_bleu-4"],
                           "intervals": sorted(extra["intervals"]["metrics"])}}))
    """)
    empty = tmp_path / "nltk_data"
    empty.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NLTK_DATA": str(empty), "TUNEDECK_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 < out["rougeLsum"] < 1 and out["compat"] > 0
    assert {"bleu4", "chrf", "eval_loss", "exact_match", "rougeL"} <= set(out["intervals"])
    assert list(empty.iterdir()) == [] and not (tmp_path / ".sacrebleu").exists()
