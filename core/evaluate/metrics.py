"""Text metrics for predictions against references: BLEU-4, ROUGE-1/2/L, exact match, JSON validity and fields."""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"\w+")
FENCE = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?```$", re.S)
DEFAULT_TOLERANCE = 1.0


def has_cjk(text: str) -> bool:
    return CJK.search(text) is not None


def segment(text: str) -> list[str]:
    """Lower-cased word tokens without punctuation; Chinese text is cut into words by jieba."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if not has_cjk(text):
        return WORD.findall(text)
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [t for t in (w.strip() for w in jieba.lcut(text)) if t and WORD.search(t)]


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _overlap(reference: Sequence[str], hypothesis: Sequence[str], n: int) -> tuple[int, int]:
    """Clipped n-gram matches and the hypothesis' n-gram count."""
    ref, hyp = ngrams(reference, n), ngrams(hypothesis, n)
    return sum(min(count, ref[gram]) for gram, count in hyp.items()), sum(hyp.values())


def _bleu(matches: list[int], totals: list[int], hyp_len: int, ref_len: int, smooth: bool) -> float:
    if hyp_len == 0 or matches[0] == 0:
        return 0.0
    logs = []
    for n, (m, t) in enumerate(zip(matches, totals, strict=True)):
        if smooth and n > 0:
            m, t = m + 1, t + 1  # add-one for n >= 2 (Lin & Och 2004, "BLEU+1")
        if m == 0:
            return 0.0
        logs.append(math.log(m / t))
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(sum(logs) / len(logs))


def sentence_bleu(reference: Sequence[str], hypothesis: Sequence[str], max_n: int = 4) -> float:
    """BLEU-4 of one tokenized hypothesis, smoothed with add-one on the 2- to 4-gram precisions."""
    stats = [_overlap(reference, hypothesis, n) for n in range(1, max_n + 1)]
    return _bleu([m for m, _ in stats], [t for _, t in stats], len(hypothesis), len(reference), smooth=True)


def corpus_bleu(references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU-4 (Papineni et al.): n-gram matches and lengths summed over all rows, no smoothing."""
    matches, totals = [0] * max_n, [0] * max_n
    for ref, hyp in zip(references, hypotheses, strict=True):
        for n in range(1, max_n + 1):
            m, t = _overlap(ref, hyp, n)
            matches[n - 1] += m
            totals[n - 1] += t
    hyp_len = sum(len(h) for h in hypotheses)
    ref_len = sum(len(r) for r in references)
    return _bleu(matches, totals, hyp_len, ref_len, smooth=False)


def _f1(overlap: int, hyp_count: int, ref_count: int) -> float:
    if overlap == 0 or hyp_count == 0 or ref_count == 0:
        return 0.0
    precision, recall = overlap / hyp_count, overlap / ref_count
    return 2 * precision * recall / (precision + recall)


def rouge_n(reference: Sequence[str], hypothesis: Sequence[str], n: int) -> float:
    """ROUGE-N F1: clipped n-gram overlap against both sides' n-gram counts."""
    matches, hyp_count = _overlap(reference, hypothesis, n)
    return _f1(matches, hyp_count, max(len(reference) - n + 1, 0))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """ROUGE-L F1 (beta 1): longest common subsequence against both lengths."""
    return _f1(lcs_length(reference, hypothesis), len(hypothesis), len(reference))


def normalize_answer(text: str) -> str:
    """Case, width and spacing folded; trailing full stops dropped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).rstrip(".。").rstrip()


def parse_json(text: str) -> dict | list | None:
    """The JSON object or array a text holds (a ```json fence around it is allowed); None otherwise."""
    text = text.strip()
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict | list) else None


def exact_match(reference: str, prediction: str) -> bool:
    """Equal after normalization, or both the same JSON value."""
    if normalize_answer(reference) == normalize_answer(prediction):
        return True
    ref = parse_json(reference)
    return ref is not None and ref == parse_json(prediction)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def field_agreement(reference: dict, prediction: Any, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, bool]:
    """For each field of a JSON reference: numbers agree within +-tolerance, anything else must be equal."""
    out: dict[str, bool] = {}
    for name, expected in reference.items():
        if not isinstance(prediction, dict) or name not in prediction:
            out[name] = False
            continue
        got = prediction[name]
        if _number(expected) is not None and not isinstance(expected, str):
            value = _number(got)
            out[name] = value is not None and abs(value - float(expected)) <= tolerance + 1e-9
        elif isinstance(expected, str) and isinstance(got, str):
            out[name] = normalize_answer(expected) == normalize_answer(got)
        else:
            out[name] = expected == got and isinstance(expected, bool) == isinstance(got, bool)
    return out


def score_row(reference: str, prediction: str, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """One prediction's scores; JSON keys appear only when the reference is a JSON object or array."""
    ref, hyp = segment(reference), segment(prediction)
    row: dict[str, Any] = {
        "bleu4": round(sentence_bleu(ref, hyp), 6),
        "rouge1": round(rouge_n(ref, hyp, 1), 6),
        "rouge2": round(rouge_n(ref, hyp, 2), 6),
        "rougeL": round(rouge_l(ref, hyp), 6),
        "exact": exact_match(reference, prediction),
    }
    expected = parse_json(reference)
    if expected is not None:
        got = parse_json(prediction)
        row["json_valid"] = got is not None
        if isinstance(expected, dict):
            row["fields"] = field_agreement(expected, got, tolerance)
    return row


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def summarize(references: list[str], predictions: list[str], rows: list[dict[str, Any]],
              tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Corpus BLEU-4 plus the mean of each row score; rates are fractions (0..1)."""
    summary: dict[str, Any] = {
        "rows": len(rows),
        "bleu4": round(corpus_bleu([segment(r) for r in references], [segment(p) for p in predictions]), 6),
        "bleu4_sentence": _mean([r["bleu4"] for r in rows]),
    }
    for key in ("rouge1", "rouge2", "rougeL"):
        summary[key] = _mean([r[key] for r in rows])
    summary["exact_match"] = _mean([float(r["exact"]) for r in rows])
    json_rows = [r for r in rows if "json_valid" in r]
    summary["json_rows"] = len(json_rows)
    summary["json_valid_rate"] = _mean([float(r["json_valid"]) for r in json_rows])
    per_field: dict[str, list[float]] = {}
    for row in json_rows:
        for name, agreed in row.get("fields", {}).items():
            per_field.setdefault(name, []).append(float(agreed))
    summary["field_agreement"] = {name: _mean(values) for name, values in per_field.items()}
    summary["field_agreement_all"] = _mean([v for values in per_field.values() for v in values])
    summary["field_tolerance"] = tolerance
    return summary
