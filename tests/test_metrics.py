"""Evaluation metrics against values worked out by hand (n-gram counts written out in the comments)."""

from __future__ import annotations

import math

import pytest

from tunedeck.core.evaluate.metrics import (
    corpus_bleu,
    exact_match,
    field_agreement,
    lcs_length,
    parse_json,
    rouge_l,
    rouge_n,
    score_row,
    segment,
    sentence_bleu,
    summarize,
)

REF = "The cat is on the mat."
HYP = "the cat sat on the mat"


def test_segment_lowercases_and_drops_punctuation():
    assert segment(REF) == ["the", "cat", "is", "on", "the", "mat"]
    assert segment("Hello,  World! v2") == ["hello", "world", "v2"]


def test_chinese_text_is_cut_into_words_not_characters_or_whitespace():
    assert segment("我喜欢自然语言处理。") == ["我", "喜欢", "自然语言", "处理"]
    assert segment("模型得分 8 分，GPU 很快") == ["模型", "得分", "8", "分", "gpu", "很快"]


def test_sentence_bleu_by_hand():
    # 1-grams: the x2, cat, on, mat match: 5/6.  2-grams: "the cat", "on the", "the mat": 3/5 -> smoothed 4/6.
    # 3-grams: "on the mat": 1/4 -> 2/5.  4-grams: 0/3 -> 1/4.  Same length: no brevity penalty.
    expected = (5 / 6 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25
    assert sentence_bleu(segment(REF), segment(HYP)) == pytest.approx(expected)
    assert sentence_bleu(segment(REF), segment(REF)) == pytest.approx(1.0)
    assert sentence_bleu(segment(REF), []) == 0.0
    assert sentence_bleu(["a", "b"], ["c", "d"]) == 0.0  # no unigram in common


def test_sentence_bleu_brevity_penalty():
    # every n-gram precision is 1 (smoothing leaves 1 at 1); 4 words against 6: BP = exp(1 - 6/4)
    assert sentence_bleu(list("abcdef"), list("abcd")) == pytest.approx(math.exp(-0.5))


def test_corpus_bleu_sums_counts_over_rows():
    refs = [segment(REF), list("abcd")]
    hyps = [segment(HYP), list("abcd")]
    # matches / totals: 1-grams (5+4)/(6+4), 2-grams (3+3)/(5+3), 3-grams (1+2)/(4+2), 4-grams (0+1)/(3+1)
    expected = (9 / 10 * 6 / 8 * 3 / 6 * 1 / 4) ** 0.25
    assert corpus_bleu(refs, hyps) == pytest.approx(expected)
    assert corpus_bleu([segment(REF)], [segment(HYP)]) == 0.0  # no 4-gram match and no smoothing


def test_rouge_by_hand():
    ref, hyp = segment(REF), segment(HYP)
    assert rouge_n(ref, hyp, 1) == pytest.approx(5 / 6)
    assert rouge_n(ref, hyp, 2) == pytest.approx(3 / 5)
    assert lcs_length(ref, hyp) == 5  # the cat on the mat
    assert rouge_l(ref, hyp) == pytest.approx(5 / 6)
    # precision 3/5, recall 3/3: F1 = 2 * 0.6 * 1 / 1.6
    assert rouge_n(list("abc"), list("abcde"), 1) == pytest.approx(0.75)
    assert rouge_l(["x"], []) == 0.0


def test_rouge_on_chinese_words():
    ref, hyp = segment("我喜欢自然语言处理"), segment("我喜欢处理自然语言")
    assert rouge_n(ref, hyp, 1) == pytest.approx(1.0)  # same four words
    assert rouge_n(ref, hyp, 2) == pytest.approx(1 / 3)  # only "我 喜欢" of 3 bigrams each
    assert rouge_l(ref, hyp) == pytest.approx(3 / 4)  # 我 喜欢 自然语言


def test_exact_match_normalizes_case_spacing_full_stops_and_json():
    assert exact_match("Paris.", "  paris ")
    assert exact_match("北京。", "北京")
    assert exact_match('{"score": 8}', '{ "score" : 8 }')
    assert not exact_match("Paris", "London")
    assert not exact_match('{"score": 8}', '{"score": 7}')


def test_parse_json_objects_arrays_and_fences_only():
    assert parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json(" [1, 2] ") == [1, 2]
    assert parse_json("8") is None  # a bare number is not a JSON answer
    assert parse_json("score: 8") is None


def test_field_agreement_numbers_within_tolerance_others_equal():
    reference = {"score": 7, "label": "good", "tags": ["a"]}
    assert field_agreement(reference, {"score": 8, "label": "Good", "tags": ["a"]}) == \
        {"score": True, "label": True, "tags": True}
    assert field_agreement(reference, {"score": "5", "label": "bad"}) == \
        {"score": False, "label": False, "tags": False}
    assert field_agreement(reference, {"score": 5}, tolerance=2) == {"score": True, "label": False, "tags": False}
    assert field_agreement(reference, None) == {"score": False, "label": False, "tags": False}
    assert field_agreement({"ok": True}, {"ok": 1}) == {"ok": False}  # booleans are not numbers


def test_summary_of_json_answers():
    references = ['{"score": 7, "label": "good"}'] * 3 + ["plain text"]
    predictions = ['{"score": 8, "label": "Good"}', '```json\n{"score": 5, "label": "good"}\n```', "score: 7",
                   "plain text"]
    rows = [score_row(r, p) for r, p in zip(references, predictions, strict=True)]
    assert "json_valid" not in rows[3]
    assert [r["json_valid"] for r in rows[:3]] == [True, True, False]
    summary = summarize(references, predictions, rows)
    assert summary["rows"] == 4
    assert summary["json_rows"] == 3
    assert summary["json_valid_rate"] == pytest.approx(2 / 3)
    assert summary["field_agreement"] == {"score": pytest.approx(1 / 3), "label": pytest.approx(2 / 3)}
    assert summary["field_agreement_all"] == pytest.approx(3 / 6)
    assert summary["exact_match"] == pytest.approx(1 / 4)  # only the plain-text row
    assert summary["rouge1"] == pytest.approx(sum(r["rouge1"] for r in rows) / 4, abs=1e-6)
