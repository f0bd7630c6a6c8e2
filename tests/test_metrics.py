"""Evaluation metrics against values worked out by hand (n-gram counts written out in the comments): tunedeck drives
sacrebleu and rouge-score with the tokenizers it says it uses, and checks answers for JSON and exact matches."""

from __future__ import annotations

import math

import pytest

from tunedeck.core.evaluate.metrics import (
    choose_language,
    choose_task,
    exact_match,
    field_agreement,
    library_versions,
    parse_json,
    score_row,
    segment,
    signatures,
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


def test_sentence_bleu_by_hand_with_sacrebleu_13a_mixed_case():
    # tok:13a splits the full stop off and keeps case: REF = The cat is on the mat . (7), HYP = 6 tokens.
    # 1-grams: the (1 of 2: REF has one lower-case "the"), cat, on, mat: 4/6.  2-grams: "on the", "the mat": 2/5
    # ("the cat" is not "The cat").  3-grams: "on the mat": 1/4.  4-grams: 0/3 -> exp smoothing 1/(2*3).
    # Brevity: 6 tokens against 7: BP = exp(1 - 7/6).
    expected = math.exp(1 - 7 / 6) * (4 / 6 * 2 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert score_row(REF, HYP, language="en")["bleu4"] == pytest.approx(expected, abs=1e-6)
    assert score_row(REF, REF, language="en")["bleu4"] == pytest.approx(1.0)
    assert score_row(REF, "", language="en")["bleu4"] == 0.0
    assert score_row("a b", "c d", language="en")["bleu4"] == 0.0  # no unigram in common


def test_sentence_bleu_brevity_penalty():
    # every n-gram precision is 1; 4 words against 6: BP = exp(1 - 6/4)
    assert score_row("a b c d e f", "a b c d", language="en")["bleu4"] == pytest.approx(math.exp(-0.5), abs=1e-6)


def test_corpus_bleu_sums_counts_over_rows():
    refs, hyps = [REF, "a b c d"], [HYP, "a b c d"]
    rows = [score_row(r, h, language="en") for r, h in zip(refs, hyps, strict=True)]
    # matches / totals: 1-grams (4+4)/(6+4), 2-grams (2+3)/(5+3), 3-grams (1+2)/(4+2), 4-grams (0+1)/(3+1);
    # 10 tokens against 11: BP = exp(1 - 11/10)
    expected = math.exp(1 - 11 / 10) * (8 / 10 * 5 / 8 * 3 / 6 * 1 / 4) ** 0.25
    summary = summarize(refs, hyps, rows, language="en")
    assert summary["bleu4"] == pytest.approx(expected, abs=1e-6)
    assert summary["bleu4_detail"].startswith(f"{100 * expected:.2f} 80.0/62.5/50.0/25.0")
    assert summary["bleu4_sentence"] == pytest.approx((rows[0]["bleu4"] + 1.0) / 2, abs=1e-6)


def test_chinese_bleu_uses_sacrebleus_zh_tokenizer_one_character_a_token():
    # 我喜欢自然语言处理 vs 我喜欢处理自然语言, 9 characters each: 1-grams 9/9; 2-grams 我喜 喜欢 自然 然语 语言 处理
    # of 8: 6/8; 3-grams 我喜欢 自然语 然语言: 3/7; 4-grams 自然语言: 1/6; same length, no brevity penalty.
    row = score_row("我喜欢自然语言处理", "我喜欢处理自然语言", language="zh")
    assert row["bleu4"] == pytest.approx((6 / 8 * 3 / 7 * 1 / 6) ** 0.25, abs=1e-6)


def test_rouge_by_hand():
    # rouge-score's default tokenizer lower-cases and drops punctuation: the cat is on the mat / the cat sat on the mat
    row = score_row(REF, HYP, language="en")
    assert row["rouge1"] == pytest.approx(5 / 6, abs=1e-6)  # the x2, cat, on, mat
    assert row["rouge2"] == pytest.approx(3 / 5, abs=1e-6)  # the cat, on the, the mat
    assert row["rougeL"] == pytest.approx(5 / 6, abs=1e-6)  # the cat on the mat
    assert row["rougeLsum"] == pytest.approx(5 / 6, abs=1e-6)  # one line: the same LCS
    # precision 3/5, recall 3/3: F1 = 2 * 0.6 * 1 / 1.6
    assert score_row("a b c", "a b c d e", language="en")["rouge1"] == pytest.approx(0.75)
    assert score_row("x", "", language="en")["rougeL"] == 0.0


def test_rouge_lsum_scores_each_line_as_a_sentence():
    # two reference lines answered in the other order: ROUGE-L (one sequence) finds "a b" only, ROUGE-Lsum takes the
    # union LCS of each reference line against every answer line: 4 of 4 words.
    row = score_row("a b\nc d", "c d\na b", language="en")
    assert row["rougeL"] == pytest.approx(0.5) and row["rougeLsum"] == pytest.approx(1.0)


def test_rouge_on_chinese_words():
    row = score_row("我喜欢自然语言处理", "我喜欢处理自然语言", language="zh")
    assert row["rouge1"] == pytest.approx(1.0)  # same four words
    assert row["rouge2"] == pytest.approx(1 / 3, abs=1e-6)  # only "我 喜欢" of 3 bigrams each
    assert row["rougeL"] == pytest.approx(3 / 4)  # 我 喜欢 自然语言
    # rouge-score's own tokenizer keeps [a-z0-9] only: without jieba Chinese would score nothing at all
    assert score_row("我喜欢自然语言处理", "我喜欢自然语言处理", language="en")["rouge1"] == 0.0


def test_language_and_signatures_follow_the_references():
    assert choose_language(["Hello.", "Bye."])[0] == "en"
    language, why = choose_language(["Hello.", "你好。", "Bye."])
    assert language == "zh" and why == "1 of 3 references contain Chinese characters"
    sacrebleu = library_versions()["sacrebleu"]
    assert signatures("en")["bleu"] == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu}"
    assert "tok:zh" in signatures("zh")["bleu"] and "eff:yes" in signatures("zh")["bleu_sentence"]
    assert signatures("zh")["chrf"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    assert "jieba" in signatures("zh")["rouge"] and "jieba" not in signatures("en")["rouge"]
    versions = library_versions()
    assert versions["sacrebleu"] and versions["rouge-score"] and versions["nltk"] and versions["rouge-chinese"]


def test_the_task_decides_which_scores_lead():
    assert choose_task(['{"score": 7}', '{"score": 2}', "n/a"]) == ("json", "2 of 3 references are JSON")
    assert choose_task(["positive", "negative", "very negative"]) == (
        "short", "short answers (median 1 word per reference)")
    kind, why = choose_task(["I am tunedeck's demo assistant.", "Paris is the capital of France."])
    # 6 words each: i am tunedeck s demo assistant / paris is the capital of france
    assert kind == "free_text" and "median 6 words" in why


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
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu4_sentence"):
        source = "bleu4" if key == "bleu4_sentence" else key
        assert summary[key] == pytest.approx(sum(r[source] for r in rows) / 4, abs=1e-6)
    assert 0 < summary["chrf"] < 1 and 0 < summary["bleu4"] < 1
