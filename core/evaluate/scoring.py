"""Score an evaluation's answers: each model's row scores and summary, how they were computed, the paired comparison
of fine-tuned against base, and the LLaMA-Factory-compatible scores when asked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tunedeck.core.evaluate import compat as compat_scores
from tunedeck.core.evaluate import significance
from tunedeck.core.evaluate.metrics import (
    LEAD,
    ROUGE_TYPES,
    choose_language,
    choose_task,
    library_versions,
    score_row,
    scorers,
    signatures,
    summarize,
)

COMPAT = (compat_scores.NAME,)


@dataclass
class SideAnswers:
    """One model's answers to the held-out rows, and per row (answer-token NLL, answer tokens) when measured."""

    answers: list[str]
    losses: list[tuple[float, int]] = field(default_factory=list)


def loss_summary(losses: list[tuple[float, int]]) -> dict[str, Any]:
    """Eval loss over all answer tokens (not a mean of row means), its perplexity and the token count."""
    nll, tokens = sum(n for n, _ in losses), sum(t for _, t in losses)
    loss = nll / tokens if tokens else None
    return {
        "eval_loss": round(loss, 5) if loss is not None else None,
        "perplexity": round(math.exp(min(loss, 50.0)), 4) if loss is not None else None,
        "tokens": tokens,
    }


def score_evaluation(references: list[str], sides: dict[str, SideAnswers], tolerance: float,
                     compat: str | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(per model: its row scores and summary, the top-level metrics.json keys: language, task, signature, versions,
    intervals when the base was scored too, compat when asked)."""
    language, language_why = choose_language(references)
    task, task_why = choose_task(references)
    per_side: dict[str, dict[str, Any]] = {}
    for side, given in sides.items():
        scores = [score_row(r, a, tolerance, language) for r, a in zip(references, given.answers, strict=True)]
        summary = {**loss_summary(given.losses), **summarize(references, given.answers, scores, tolerance, language)}
        per_side[side] = {"scores": scores, "summary": summary}
    lead, lead_why = LEAD[task]
    extra: dict[str, Any] = {
        "language": {"code": language, "why": language_why},
        "task": {"kind": task, "why": task_why, "lead": list(lead), "lead_why": lead_why},
        "signature": signatures(language),
        "versions": library_versions(),
    }
    if "base" in sides and "finetuned" in sides and references:
        extra["intervals"] = compare_sides(references, sides, per_side, language)
    if compat:
        extra["compat"] = {compat: compat_block(references, sides)}
    return per_side, extra


def compat_block(references: list[str], sides: dict[str, SideAnswers]) -> dict[str, Any]:
    return {
        "how": "LLaMA-Factory's predict stage (ComputeSimilarity): per-row NLTK sentence BLEU-4 over characters "
               "(smoothing method 3) and rouge-chinese F on jieba words, x100, mean over rows",
        **{side: compat_scores.llamafactory_scores(references, given.answers) for side, given in sides.items()},
    }


def row_stats(scores: list[dict[str, Any]], losses: list[tuple[float, int]]) -> dict[str, list[tuple[float, float]]]:
    """Per metric, each row's (numerator, denominator): the metric over any rows is sum / sum."""
    stats: dict[str, list[tuple[float, float]]] = {}
    if losses:
        stats["eval_loss"] = [(float(n), float(t)) for n, t in losses]
    for key in ROUGE_TYPES:
        stats[key] = [(row[key], 1.0) for row in scores]
    stats["exact_match"] = [(float(row["exact"]), 1.0) for row in scores]
    if any("json_valid" in row for row in scores):
        stats["json_valid_rate"] = [(float(row.get("json_valid", 0)), float("json_valid" in row)) for row in scores]
    if any(row.get("fields") for row in scores):
        stats["field_agreement_all"] = [(float(sum(row.get("fields", {}).values())), float(len(row.get("fields", {}))))
                                        for row in scores]
    return stats


def compare_sides(references: list[str], sides: dict[str, SideAnswers], per_side: dict[str, dict[str, Any]],
                  language: str) -> dict[str, Any]:
    """Paired bootstrap of fine-tuned against base on every metric, all on the same resampled rows."""
    indices = significance.resample_indices(len(references))
    use = scorers(language)
    base, tuned = sides["base"].answers, sides["finetuned"].answers
    results = {
        "bleu4": significance.sacrebleu_paired("bleu4", use.bleu, references, base, tuned, indices),
        "chrf": significance.sacrebleu_paired("chrf", use.chrf, references, base, tuned, indices),
    }
    base_stats = row_stats(per_side["base"]["scores"], sides["base"].losses)
    tuned_stats = row_stats(per_side["finetuned"]["scores"], sides["finetuned"].losses)
    for key in base_stats.keys() & tuned_stats.keys():
        results[key] = significance.compare(key, base_stats[key], tuned_stats[key], significance.ratio_score, indices)
    return {
        "method": "paired bootstrap (sacrebleu's for BLEU and chrF; the same resampled rows for the others)",
        "rows": len(references), "resamples": significance.RESAMPLES, "seed": significance.SEED,
        "confidence": significance.CONFIDENCE, "baseline": "base",
        "metrics": dict(sorted(results.items())),
    }
