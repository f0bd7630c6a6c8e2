"""The metrics of an evaluation as table rows, verdict sentences and provenance lines, shared by the CLI and the app."""

from __future__ import annotations

from typing import Any

# key in metrics.json -> (label, how to show it, what it measures)
METRICS = {
    "eval_loss": ("eval loss", "num4", "answer-token loss on the references (lower is better)"),
    "perplexity": ("perplexity", "num2", "exp(eval loss)"),
    "chrf": ("chrF", "x100", "character 6-gram F-score (sacrebleu)"),
    "rougeL": ("ROUGE-L F1", "x100", "longest common word sequence (rouge-score)"),
    "rougeLsum": ("ROUGE-Lsum F1", "x100", "ROUGE-L over newline-split sentences"),
    "rouge1": ("ROUGE-1 F1", "x100", "word overlap (rouge-score)"),
    "rouge2": ("ROUGE-2 F1", "x100", "word-pair overlap (rouge-score)"),
    "bleu4": ("BLEU-4 (corpus)", "x100", "sacrebleu corpus BLEU, signature below"),
    "bleu4_sentence": ("BLEU-4 (sentence mean)", "x100", "mean of per-row sacrebleu BLEU"),
    "exact_match": ("exact match", "pct", "whole answer equal after normalization"),
    "json_valid_rate": ("JSON valid", "pct", "answers that parse as JSON, of JSON rows"),
    "field_agreement_all": ("JSON fields agree", "pct", "JSON fields equal, numbers within tolerance"),
}
ORDER = ("eval_loss", "perplexity", "chrf", "rougeL", "rougeLsum", "rouge1", "rouge2", "bleu4", "bleu4_sentence",
         "exact_match", "json_valid_rate", "field_agreement_all")
COMPAT_LABELS = {"predict_bleu-4": "BLEU-4", "predict_rouge-1": "ROUGE-1", "predict_rouge-2": "ROUGE-2",
                 "predict_rouge-l": "ROUGE-L"}
COMPAT_NAMES = {"llamafactory": "LLaMA-Factory"}
BETTER_LOWER = {"eval_loss", "perplexity"}
HEADER = ("metric", "fine-tuned", "base", "difference (95% CI)", "why")


def _show(value: Any, how: str) -> str:
    if value is None:
        return "-"
    if how == "num4":
        return f"{value:.4f}"
    if how == "num2":
        return f"{value:.2f}"
    if how == "x100":
        return f"{100 * value:.2f}"
    if how == "raw":
        return f"{value:.2f}"
    return f"{100 * value:.1f}%"


def _points(value: float, how: str, sign: bool = False) -> str:
    """A difference: eval loss as it is, every other score in points (x100)."""
    if how == "num4":
        return f"{value:+.4f}" if sign else f"{value:.4f}"
    return f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}"


def difference(result: dict[str, Any] | None, how: str) -> str:
    """"+50.9 (45.1 to 56.3)": fine-tuned minus base, and the 95% interval of that difference."""
    if not result:
        return ""
    return (f"{_points(result['difference'], how, sign=True)} "
            f"({_points(result['low'], how)} to {_points(result['high'], how)})")


def order(metrics: dict[str, Any]) -> list[str]:
    """The task's leading scores first (metrics.json's task.lead), then the rest in the usual order."""
    lead = list((metrics.get("task") or {}).get("lead") or [])
    return [k for k in lead if k in METRICS] + [k for k in ORDER if k not in lead]


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(label, fine-tuned, base, difference, why) for every metric that has a value; per-field JSON agreement follows
    the pooled one; the LLaMA-Factory-compatible scores come last when they were asked for."""
    tuned, base = metrics.get("finetuned", {}), metrics.get("base")
    compared = (metrics.get("intervals") or {}).get("metrics", {})
    lead = set((metrics.get("task") or {}).get("lead") or [])
    rows = []
    for key in order(metrics):
        if tuned.get(key) is None and (base or {}).get(key) is None:
            continue
        label, how, what = METRICS[key]
        if key == "field_agreement_all":
            label = f"{label} (+-{tuned.get('field_tolerance', 1):g})"
        why = f"leads: {what}" if key in lead else what
        rows.append((label, _show(tuned.get(key), how), _show(base.get(key), how) if base else "",
                     difference(compared.get(key), how), why))
        if key == "field_agreement_all":
            for name, value in (tuned.get("field_agreement") or {}).items():
                other = (base.get("field_agreement") or {}).get(name) if base else None
                rows.append((f"  field '{name}'", _show(value, "pct"), _show(other, "pct") if base else "", "",
                             "this field alone"))
    for name, block in (metrics.get("compat") or {}).items():
        shown = COMPAT_NAMES.get(name, name)
        for key, short in COMPAT_LABELS.items():
            other = (block.get("base") or {}).get(key) if base else None
            rows.append((f"{shown} {short}", _show((block.get("finetuned") or {}).get(key), "raw"),
                         _show(other, "raw") if base else "", "", f"as {shown} prints {key}"))
    return rows


def labels(metrics: dict[str, Any]) -> dict[str, str]:
    """What the two columns are called: fine-tuned and base, or the two evaluations compared (metrics["labels"])."""
    return {"finetuned": "fine-tuned", "base": "base", **(metrics.get("labels") or {})}


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table for the terminal: the task line, then the rows (base and difference when compared)."""
    with_base = "base" in metrics
    keep = [0, 1, 2, 3, 4] if with_base else [0, 1, 4]
    named = labels(metrics)
    header = tuple((HEADER[0], named["finetuned"], named["base"], *HEADER[3:])[i] for i in keep)
    body = [tuple(row[i] for i in keep) for row in metric_rows(metrics)]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    last = len(header) - 1
    lines = ["  ".join(c.ljust(w) if i in (0, last) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in [header, *body]]
    task = task_line(metrics)
    return "\n".join(([task] if task else []) + lines)


def task_line(metrics: dict[str, Any]) -> str | None:
    """Why the table leads with what it leads with."""
    task = metrics.get("task")
    return f"task: {task['why']}; {task['lead_why']}" if task else None


def verdict(metrics: dict[str, Any]) -> str | None:
    """Plain sentences, when the base was scored too: on eval loss and the task's leading scores, which model did
    better and by how much (95% interval), or that the difference is not significant on this many rows."""
    tuned, base = metrics.get("finetuned", {}), metrics.get("base")
    if not base:
        return None
    intervals = metrics.get("intervals")
    if not intervals:
        return _plain_verdict(tuned, base)
    compared = intervals.get("metrics", {})
    lead = [k for k in ["eval_loss", *(metrics.get("task") or {}).get("lead", [])] if k in compared]
    rows = intervals.get("rows", metrics.get("rows", 0))
    return "\n".join(sentence(compared[k], rows, labels(metrics)) for k in lead) or None


def sentence(result: dict[str, Any], rows: int, named: dict[str, str] | None = None) -> str:
    """"fine-tuned better on ROUGE-L F1 by 12.3 (95% CI 8.1 to 16.0)", or "no significant difference on chrF over 20
    rows (+1.2, 95% CI -3.0 to 5.1)". A lead is stated as a positive number, its interval turned the same way."""
    label, how, _ = METRICS[result["metric"]]
    if not result.get("better"):
        change = _points(result["difference"], how, sign=True)
        ci = f"95% CI {_points(result['low'], how)} to {_points(result['high'], how)}"
        return f"no significant difference on {label} over {rows} rows ({change}, {ci})"
    low, high = (result["low"], result["high"]) if result["difference"] >= 0 else (-result["high"], -result["low"])
    side = (named or {"finetuned": "fine-tuned", "base": "base"})[result["better"]]
    return (f"{side} better on {label} by {_points(abs(result['difference']), how)} "
            f"(95% CI {_points(low, how)} to {_points(high, how)})")


def _plain_verdict(tuned: dict[str, Any], base: dict[str, Any]) -> str | None:
    """Metrics written before intervals existed: which model did better on loss and ROUGE-L, without intervals."""
    wins = []
    for key, how in (("eval_loss", "num4"), ("rougeL", "x100")):
        a, b = tuned.get(key), base.get(key)
        if a is None or b is None:
            continue
        if a == b:
            wins.append(f"{key}: even ({_show(a, how)})")
            continue
        better = a < b if key in BETTER_LOWER else a > b
        wins.append(f"{key}: {'fine-tuned' if better else 'base'} better ({_show(a, how)} vs {_show(b, how)})")
    return "; ".join(wins) or None


def provenance(metrics: dict[str, Any]) -> list[str]:
    """How the numbers were computed: the language, sacrebleu's signatures, the ROUGE setup, the bootstrap."""
    lines = []
    if metrics.get("language"):
        lines.append(f"language: {metrics['language']['code']} ({metrics['language']['why']})")
    signature = metrics.get("signature") or {}
    for key, label in (("bleu", "BLEU"), ("chrf", "chrF"), ("rouge", "ROUGE")):
        if signature.get(key):
            lines.append(f"{label}: {signature[key]}")
    intervals = metrics.get("intervals")
    if intervals:
        lines.append(f"intervals: {intervals['method']}, {intervals['resamples']} resamples, seed {intervals['seed']}, "
                     f"{intervals['rows']} rows")
    return lines
