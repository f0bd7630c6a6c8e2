"""Text scores: sacrebleu BLEU and chrF, rouge-score ROUGE, exact match, JSON validity and per-field agreement."""

from __future__ import annotations

import json
import logging
import re
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"\w+")
FENCE = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?```$", re.S)
DEFAULT_TOLERANCE = 1.0
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
SACREBLEU_TOKENIZER = {"en": "13a", "zh": "zh"}
SHORT_ANSWER_WORDS = 3  # references of at most this many words (median) are classification-like
VERSIONED = ("sacrebleu", "rouge-score", "jieba", "nltk", "rouge-chinese", "numpy")
# Which scores lead for each kind of answer, and why (the table and the verdict follow this).
LEAD = {
    "json": (("json_valid_rate", "field_agreement_all", "exact_match"),
             "JSON validity and per-field agreement lead"),
    "short": (("exact_match", "chrf"),
              "classification-like: exact match leads; overlap scores say little about a word or two"),
    "free_text": (("chrf", "rougeL", "bleu4"),
                  "chrF and ROUGE-L lead; exact match is too strict for sentences"),
}


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


class JiebaTokenizer:
    """rouge-score's tokenizer interface over `segment`: Chinese cut into words by jieba, other text into \\w+ words."""

    def tokenize(self, text: str) -> list[str]:
        return segment(text)


def choose_language(references: Sequence[str]) -> tuple[str, str]:
    """"zh" when any reference holds Chinese characters (sacrebleu's zh tokenizer also splits the Latin parts as 13a
    does), else "en"; and why."""
    chinese = sum(has_cjk(r) for r in references)
    if chinese:
        return "zh", f"{chinese} of {len(references)} references contain Chinese characters"
    return "en", f"none of the {len(references)} references contain Chinese characters"


def choose_task(references: Sequence[str]) -> tuple[str, str]:
    """What the answers are: "json" (most references are JSON), "short" (classification-like) or "free_text"."""
    json_refs = sum(parse_json(r) is not None for r in references)
    if json_refs and 2 * json_refs >= len(references):
        return "json", f"{json_refs} of {len(references)} references are JSON"
    words = statistics.median([len(segment(r)) for r in references]) if references else 0
    said = f"median {words:g} word{'' if words == 1 else 's'} per reference"
    if words <= SHORT_ANSWER_WORDS:
        return "short", f"short answers ({said})"
    return "free_text", f"free text ({said})"


@dataclass(frozen=True)
class Scorers:
    """The metric objects for one language: sacrebleu's corpus BLEU, sentence BLEU and chrF, rouge-score's scorer."""

    language: str
    bleu: Any
    sentence_bleu: Any
    chrf: Any
    rouge: Any

    @property
    def rouge_signature(self) -> str:
        tokenizer = "jieba words, lower-cased" if self.language == "zh" else "default (lower-cased [a-z0-9]+)"
        return f"rouge-score {version('rouge-score')}|tok:{tokenizer}|stemmer:no|Lsum split:newline"


@lru_cache(maxsize=4)
def scorers(language: str) -> Scorers:
    """sacrebleu with tok:13a (English) or tok:zh (Chinese), defaults otherwise; rouge-score's ROUGE-1/2/L/Lsum."""
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU, CHRF

    tokenize = SACREBLEU_TOKENIZER[language]
    return Scorers(
        language=language,
        bleu=BLEU(tokenize=tokenize),
        sentence_bleu=BLEU(tokenize=tokenize, effective_order=True),
        chrf=CHRF(),
        rouge=RougeScorer(list(ROUGE_TYPES), use_stemmer=False,
                          tokenizer=JiebaTokenizer() if language == "zh" else None),
    )


def version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """The installed versions of the libraries behind the numbers."""
    return {name: version(name) for name in VERSIONED}


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


def score_row(reference: str, prediction: str, tolerance: float = DEFAULT_TOLERANCE,
              language: str | None = None) -> dict[str, Any]:
    """One prediction's scores (fractions 0..1); JSON keys appear only when the reference is JSON.
    language: "en" or "zh" for the whole dataset (`choose_language`); None decides from this reference alone."""
    use = scorers(language or choose_language([reference])[0])
    rouge = use.rouge.score(reference, prediction)
    row: dict[str, Any] = {
        "bleu4": round(use.sentence_bleu.sentence_score(prediction, [reference]).score / 100, 6),
        "chrf": round(use.chrf.sentence_score(prediction, [reference]).score / 100, 6),
        **{key: round(float(rouge[key].fmeasure), 6) for key in ROUGE_TYPES},
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
              tolerance: float = DEFAULT_TOLERANCE, language: str | None = None) -> dict[str, Any]:
    """Corpus BLEU-4 and chrF (sacrebleu) plus the mean of each row score; every score is a fraction (0..1)."""
    use = scorers(language or choose_language(references)[0])
    bleu = use.bleu.corpus_score(predictions, [references])
    summary: dict[str, Any] = {
        "rows": len(rows),
        "bleu4": round(bleu.score / 100, 6),
        "bleu4_detail": bleu.format(score_only=False).split("=", 1)[1].strip(),
        "bleu4_sentence": _mean([r["bleu4"] for r in rows]),
        "chrf": round(use.chrf.corpus_score(predictions, [references]).score / 100, 6),
    }
    for key in ROUGE_TYPES:
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


def signatures(language: str) -> dict[str, str]:
    """How each score is computed, as its library states it (sacrebleu's signatures; nrefs:1, one reference a row)."""
    use = scorers(language)
    return {
        "bleu": _sacrebleu_signature(use.bleu),
        "bleu_sentence": _sacrebleu_signature(use.sentence_bleu),
        "chrf": _sacrebleu_signature(use.chrf),
        "rouge": use.rouge_signature,
    }


def _sacrebleu_signature(metric: Any) -> str:
    """sacrebleu states a signature only once a metric has scored (it records the number of references)."""
    if "num_refs" not in vars(metric):
        metric.corpus_score(["a"], [["a"]])
    return str(metric.get_signature())
