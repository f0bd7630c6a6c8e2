"""The metrics of an evaluation as table rows (label, fine-tuned, base), shared by the CLI and the app."""

from __future__ import annotations

from typing import Any

# (key in metrics.json, label, how to show it)
ROWS = (
    ("eval_loss", "eval loss", "num4"),
    ("perplexity", "perplexity", "num2"),
    ("bleu4", "BLEU-4 (corpus)", "x100"),
    ("bleu4_sentence", "BLEU-4 (sentence mean)", "x100"),
    ("rouge1", "ROUGE-1 F1", "x100"),
    ("rouge2", "ROUGE-2 F1", "x100"),
    ("rougeL", "ROUGE-L F1", "x100"),
    ("exact_match", "exact match", "pct"),
    ("json_valid_rate", "JSON valid", "pct"),
    ("field_agreement_all", "JSON fields agree", "pct"),
)
BETTER_LOWER = {"eval_loss", "perplexity"}


def _show(value: Any, how: str) -> str:
    if value is None:
        return "-"
    if how == "num4":
        return f"{value:.4f}"
    if how == "num2":
        return f"{value:.2f}"
    if how == "x100":
        return f"{100 * value:.2f}"
    return f"{100 * value:.1f}%"


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for every metric that has a value; per-field JSON agreement follows the pooled one."""
    tuned, base = metrics.get("finetuned", {}), metrics.get("base")
    rows = []
    for key, label, how in ROWS:
        if tuned.get(key) is None and (base or {}).get(key) is None:
            continue
        if key == "field_agreement_all":
            label = f"{label} (+-{tuned.get('field_tolerance', 1):g})"
        rows.append((label, _show(tuned.get(key), how), _show(base.get(key), how) if base else ""))
        if key == "field_agreement_all":
            for name, value in (tuned.get("field_agreement") or {}).items():
                other = (base.get("field_agreement") or {}).get(name) if base else None
                rows.append((f"  field '{name}'", _show(value, "pct"), _show(other, "pct") if base else ""))
    return rows


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    with_base = "base" in metrics
    header = ("metric", "fine-tuned", "base") if with_base else ("metric", "fine-tuned")
    body = [row if with_base else row[:2] for row in metric_rows(metrics)]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in [header, *body]]
    return "\n".join(lines)


def verdict(metrics: dict[str, Any]) -> str | None:
    """Which model did better on loss and ROUGE-L, when the base was scored too."""
    tuned, base = metrics.get("finetuned", {}), metrics.get("base")
    if not base:
        return None
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
