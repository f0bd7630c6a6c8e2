"""The evaluation table: the task decides which scores lead, every row says why it is there, provenance follows."""

from __future__ import annotations

import re

from tunedeck.core.evaluate.scoring import SideAnswers, score_evaluation
from tunedeck.core.evaluate.table import format_table, provenance, verdict


def metrics_for(references: list[str], answers: list[str], compat: str | None = None) -> dict:
    per_side, extra = score_evaluation(references, {"finetuned": SideAnswers(answers, [(2.0, 4)] * len(answers))},
                                       1.0, compat)
    return {"rows": len(references), "finetuned": per_side["finetuned"]["summary"], **extra}


def rows_of(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()[2:]]


def test_short_answers_lead_with_exact_match_and_free_text_with_chrf():
    short = format_table(metrics_for(["positive", "negative", "negative"], ["positive", "positive", "negative"]))
    lines = short.splitlines()
    assert lines[0] == ("task: short answers (median 1 word per reference); classification-like: exact match leads; "
                        "overlap scores say little about a word or two")
    assert re.split(r"\s{2,}", lines[1].strip()) == ["metric", "fine-tuned", "why"]  # no base: no difference either
    body = rows_of(short)
    assert body[0] == ["exact match", "66.7%", "leads: whole answer equal after normalization"]
    assert body[1][0] == "chrF" and body[1][2].startswith("leads: ")
    assert not any(row[-1].startswith("leads: ") for row in body[2:])

    free = rows_of(format_table(metrics_for(["The cat is on the mat today.", "A dog runs in the park."],
                                            ["the cat sat on the mat", "a dog runs in a park"])))
    assert [row[0] for row in free[:3]] == ["chrF", "ROUGE-L F1", "BLEU-4 (corpus)"]
    assert [row[0] for row in free[3:5]] == ["eval loss", "perplexity"] and free[3][1] == "0.5000"


def test_compat_rows_and_provenance_without_a_base():
    metrics = metrics_for(["我喜欢自然语言处理"], ["我喜欢处理自然语言"], compat="llamafactory")
    body = {row[0]: row[1:] for row in rows_of(format_table(metrics))}
    assert body["LLaMA-Factory ROUGE-L"] == ["75.00", "as LLaMA-Factory prints predict_rouge-l"]
    assert body["LLaMA-Factory BLEU-4"] == ["48.11", "as LLaMA-Factory prints predict_bleu-4"]
    lines = provenance(metrics)
    assert lines[0] == "language: zh (1 of 1 references contain Chinese characters)"
    assert lines[1].startswith("BLEU: nrefs:1|case:mixed|eff:no|tok:zh|smooth:exp|version:")
    assert lines[3].startswith("ROUGE: rouge-score ") and "jieba" in lines[3]
    assert verdict(metrics) is None and not any(line.startswith("intervals") for line in lines)
