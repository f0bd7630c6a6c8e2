"""Paired bootstrap: sacrebleu's own test for BLEU/chrF, the same resampled rows for the rest, and the sentences."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tunedeck.core.evaluate import significance
from tunedeck.core.evaluate.metrics import scorers
from tunedeck.core.evaluate.scoring import SideAnswers, score_evaluation
from tunedeck.core.evaluate.table import format_table, sentence, verdict

WORDS = "the a cat dog sat ran on under mat rug red blue big small house garden".split()


def noisy_rows(rows: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """References, a model that keeps most words, and one that keeps about as many (no real difference)."""
    rng = random.Random(seed)
    refs = [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(rows)]

    def answer(ref: str, keep: float) -> str:
        return " ".join(w if rng.random() < keep else rng.choice(WORDS) for w in ref.split())

    return refs, [answer(r, 0.6) for r in refs], [answer(r, 0.6) for r in refs]


def test_the_draws_are_sacrebleus_and_bleu_agrees_with_its_paired_test():
    from sacrebleu.significance import PairedTest, estimate_ci

    refs, a, b = noisy_rows(30, seed=1)
    indices = significance.resample_indices(len(refs))
    assert indices.shape == (1000, 30)
    assert (indices == np.random.default_rng(12345).choice(30, size=(1000, 30), replace=True)).all()
    bleu = scorers("en").bleu
    ours = significance.sacrebleu_paired("bleu4", bleu, refs, a, b, indices)
    _, results = PairedTest([("base", a), ("finetuned", b)], {"BLEU": bleu}, [refs], test_type="bs",
                            n_samples=1000)()
    theirs = results["BLEU"][1]
    assert ours["p_value"] == pytest.approx(theirs.p_value, abs=1e-4)
    assert ours["finetuned"] == pytest.approx(theirs.score / 100, abs=1e-6)
    assert ours["sacrebleu"]["signature"].startswith("nrefs:1|bs:1000|seed:12345|")
    # the generic resampling (per-row statistics, the same draws) gives sacrebleu's p-value too
    stats = [bleu._extract_corpus_statistics(side, [refs]) for side in (a, b)]
    generic = significance.compare("bleu4", stats[0], stats[1],
                                   lambda rows: bleu._compute_score_from_stats(rows.sum(axis=0)).score / 100, indices)
    assert generic["p_value"] == pytest.approx(theirs.p_value, abs=1e-4)
    # the interval is read where sacrebleu's estimate_ci reads it: the 25th and the 975th of 1000 sorted values
    assert significance.interval(np.arange(1000.0)) == (25.0, 974.0)
    assert estimate_ci(np.arange(1000.0))[1] == pytest.approx((974 - 25) / 2)


def test_a_real_improvement_is_significant_and_said_plainly():
    refs, _, _ = noisy_rows(40, seed=2)
    tuned = [" ".join(r.split()[:7]) for r in refs]  # nearly the reference
    base = [" ".join(reversed(r.split())) for r in refs]
    losses = {"finetuned": [(5.0, 10)] * 40, "base": [(12.0, 10)] * 39 + [(1.0, 10)]}
    sides = {"finetuned": SideAnswers(tuned, losses["finetuned"]), "base": SideAnswers(base, losses["base"])}
    per_side, extra = score_evaluation(refs, sides, 1.0)
    metrics = json.loads(json.dumps({"rows": 40, **{k: v["summary"] for k, v in per_side.items()}, **extra}))
    rouge_l = metrics["intervals"]["metrics"]["rougeL"]
    assert rouge_l["better"] == "finetuned" and rouge_l["low"] > 0 and rouge_l["significant"]
    assert rouge_l["low"] <= rouge_l["difference"] <= rouge_l["high"]
    loss = metrics["intervals"]["metrics"]["eval_loss"]
    assert loss["difference"] < 0 and loss["better"] == "finetuned"  # lower is better
    said = verdict(metrics).splitlines()
    assert said[0].startswith("fine-tuned better on eval loss by ")
    expected = (f"fine-tuned better on ROUGE-L F1 by {100 * rouge_l['difference']:.1f} "
                f"(95% CI {100 * rouge_l['low']:.1f} to {100 * rouge_l['high']:.1f})")
    assert expected in said
    assert "difference (95% CI)" in format_table(metrics).splitlines()[1]


def test_no_real_difference_is_said_with_the_number_of_rows():
    refs, a, b = noisy_rows(20, seed=3)
    per_side, extra = score_evaluation(refs, {"finetuned": SideAnswers(b), "base": SideAnswers(a)}, 1.0)
    chrf = extra["intervals"]["metrics"]["chrf"]
    assert not chrf["significant"] and chrf["better"] is None and chrf["low"] < 0 < chrf["high"]
    change = f"{100 * chrf['difference']:+.1f}"
    assert sentence(chrf, 20).startswith(f"no significant difference on chrF over 20 rows ({change}, 95% CI ")
    assert "eval_loss" not in extra["intervals"]["metrics"]  # no losses given, no interval made up


def test_json_rates_are_resampled_over_json_rows_and_fields_only():
    refs = ['{"score": 7, "label": "good"}', '{"score": 2, "label": "bad"}', "plain", '{"score": 5, "label": "ok"}']
    tuned = ['{"score": 7, "label": "good"}', '{"score": 3, "label": "bad"}', "plain", "five"]
    base = ["seven", "two", "plain", '{"score": 9, "label": "ok"}']
    _, extra = score_evaluation(refs, {"finetuned": SideAnswers(tuned), "base": SideAnswers(base)}, 1.0)
    assert extra["task"]["kind"] == "json" and extra["task"]["lead"][0] == "json_valid_rate"
    compared = extra["intervals"]["metrics"]
    assert compared["json_valid_rate"]["finetuned"] == pytest.approx(2 / 3, abs=1e-6)  # of the 3 JSON rows, not of 4
    assert compared["json_valid_rate"]["base"] == pytest.approx(1 / 3, abs=1e-6)
    assert compared["field_agreement_all"]["finetuned"] == pytest.approx(4 / 6, abs=1e-6)  # 2 fields x 3 JSON rows
    assert compared["field_agreement_all"]["base"] == pytest.approx(1 / 6, abs=1e-6)
