"""Is a difference between two models real: paired bootstrap intervals, sacrebleu's for BLEU/chrF, alike for the rest.

Both models answered the same rows. sacrebleu's paired bootstrap (Koehn 2004, as Moses'
bootstrap-hypothesis-difference-significance.pl) draws RESAMPLES sets of row indices with replacement from
numpy's default_rng(SEED) and scores both models on each set. The other metrics are scored on exactly the same
draws: each is a ratio of per-row sums (ROUGE and exact match: the mean of row scores; eval loss: answer-token
NLL over answer tokens; JSON validity over JSON rows; field agreement over fields). The 95% interval of the
difference is read from the sorted resampled differences at sacrebleu's positions (the 25th and the 975th of
1000); a difference is significant when that interval excludes zero. The p-value is sacrebleu's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

RESAMPLES = 1000
SEED = 12345  # sacrebleu's default (SACREBLEU_SEED)
CONFIDENCE = 0.95
LOWER_IS_BETTER = {"eval_loss"}


def resample_indices(rows: int, resamples: int = RESAMPLES, seed: int | None = SEED) -> np.ndarray:
    """The row indices of every resample, drawn as sacrebleu's paired bootstrap draws them."""
    return np.random.default_rng(seed).choice(rows, size=(resamples, rows), replace=True)


def interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% interval of bootstrap values, at the positions sacrebleu's estimate_ci reads."""
    ordered = np.sort(values[~np.isnan(values)])
    if not len(ordered):
        return float("nan"), float("nan")
    lower = len(ordered) // 40
    return float(ordered[lower]), float(ordered[len(ordered) - lower - 1])


def p_value(differences: np.ndarray, observed: float) -> float:
    """sacrebleu's paired-bootstrap p-value: how often a centred resampled |difference| exceeds the observed one."""
    spread = np.abs(differences[~np.isnan(differences)])
    if not len(spread):
        return float("nan")
    return float((np.sum(spread - spread.mean() > abs(observed)) + 1) / (len(spread) + 1))


def ratio_score(stats: np.ndarray) -> float:
    """sum(numerators) / sum(denominators) of rows given as (numerator, denominator) pairs; NaN without rows."""
    total = stats.sum(axis=0)
    return float(total[0] / total[1]) if total[1] else float("nan")


def compare(name: str, base_stats: Sequence[Sequence[float]], tuned_stats: Sequence[Sequence[float]],
            score: Callable[[np.ndarray], float], indices: np.ndarray) -> dict[str, Any]:
    """One metric on both models: the observed scores, the difference (fine-tuned minus base) and its interval."""
    base, tuned = np.asarray(base_stats, dtype="float64"), np.asarray(tuned_stats, dtype="float64")
    base_scores = np.array([score(base[rows]) for rows in indices])
    tuned_scores = np.array([score(tuned[rows]) for rows in indices])
    observed = score(tuned) - score(base)
    differences = tuned_scores - base_scores
    low, high = interval(differences)
    return {
        "metric": name,
        "base": round(score(base), 6), "finetuned": round(score(tuned), 6),
        "difference": round(observed, 6), "low": round(low, 6), "high": round(high, 6),
        "p_value": round(p_value(differences, observed), 4),
        "significant": bool(low > 0 or high < 0),
        "better": better(name, low, high),
    }


def better(name: str, low: float, high: float) -> str | None:
    """"finetuned", "base", or None when the interval of the difference holds zero."""
    if not (low > 0 or high < 0):
        return None
    tuned_higher = low > 0
    return "finetuned" if tuned_higher != (name in LOWER_IS_BETTER) else "base"


def sacrebleu_paired(name: str, metric: Any, references: list[str], base: list[str], tuned: list[str],
                     indices: np.ndarray) -> dict[str, Any]:
    """BLEU or chrF through sacrebleu's PairedTest (paired bootstrap), with the difference's interval on the same
    draws from the metric's own per-row statistics."""
    from sacrebleu.significance import PairedTest

    test = PairedTest([("base", base), ("finetuned", tuned)], {name: metric}, [references], test_type="bs",
                      n_samples=len(indices))
    signatures, results = test()
    key = next(k for k in results if k != "System")
    base_result, tuned_result = results[key]
    stats = [metric._extract_corpus_statistics(side, [references]) for side in (base, tuned)]  # noqa: SLF001

    def score(rows: np.ndarray) -> float:
        return metric._compute_score_from_stats(rows.sum(axis=0)).score / 100  # noqa: SLF001

    out = compare(name, stats[0], stats[1], score, indices)
    out["p_value"] = round(float(tuned_result.p_value), 4)  # sacrebleu's own
    out["sacrebleu"] = {"signature": str(signatures[key])}
    for side, result in (("base", base_result), ("finetuned", tuned_result)):  # sacrebleu's mean +- half-width
        out["sacrebleu"][f"{side}_mean"] = round(float(result.mean) / 100, 6)
        out["sacrebleu"][f"{side}_ci"] = round(float(result.ci) / 100, 6)
    return out
