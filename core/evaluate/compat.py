"""Scores computed the way LLaMA-Factory's predict stage computes them, so old LLaMA-Factory runs can sit alongside.

LLaMA-Factory (src/llamafactory/train/sft/metric.py, `ComputeSimilarity`) scores every row on its own and prints
the mean over rows, x100, under `predict_bleu-4`, `predict_rouge-1`, `predict_rouge-2` and `predict_rouge-l`:
- BLEU-4: NLTK's `sentence_bleu` over the *characters* of the texts (spaces included), one reference, smoothing
  method 3 (NIST geometric: the k-th n-gram order with no match counts 1 / (2^k * n-grams in the answer));
- ROUGE: `rouge-chinese` on jieba's words joined by spaces (repeated n-grams count once; ROUGE-L over all words);
  an answer or reference with no words scores 0;
- each row's value is rounded to 4 decimals before the mean.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

NAME = "llamafactory"
KEYS = ("predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l")


def _words(text: str) -> str:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return " ".join(jieba.cut(text))


def row_scores(reference: str, prediction: str) -> dict[str, float]:
    """One row, x100 and rounded to 4 decimals as LLaMA-Factory stores it."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    hypothesis, target = _words(prediction), _words(reference)
    if hypothesis.split() and target.split():
        rouge = Rouge().get_scores(hypothesis, target)[0]
        f = {key: rouge[key]["f"] for key in ("rouge-1", "rouge-2", "rouge-l")}
    else:
        f = dict.fromkeys(("rouge-1", "rouge-2", "rouge-l"), 0.0)
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3)
    scores = {"predict_bleu-4": round(bleu * 100, 4)}
    scores.update({f"predict_{key}": round(value * 100, 4) for key, value in f.items()})
    return scores


def llamafactory_scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float | None]:
    """The means LLaMA-Factory's predict stage prints for these predictions (predict_results.json's keys)."""
    rows = [row_scores(r, p) for r, p in zip(references, predictions, strict=True)]
    return {key: (sum(row[key] for row in rows) / len(rows)) if rows else None for key in KEYS}
