"""Compare two evaluations of the same held-out rows (two runs, or two checkpoints of one run) by paired bootstrap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunedeck.core.errors import DataError
from tunedeck.core.evaluate.layout import EvalLayout
from tunedeck.core.evaluate.scoring import SideAnswers, score_evaluation
from tunedeck.core.jobs.runs import find_run


def predictions_path(source: str, runs_root: Path) -> Path:
    """A predictions.jsonl file as given, or the latest evaluation of the run with that id."""
    given = Path(source)
    if given.is_file():
        return given
    return EvalLayout.for_run(find_run(runs_root, source)).predictions_jsonl


def read_predictions(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError("no evaluation to compare", where=str(path),
                        hint="run `tunedeck eval RUN` first, or give a predictions.jsonl file") from None
    return [json.loads(line) for line in lines if line.strip()]


def side_answers(records: list[dict[str, Any]]) -> SideAnswers:
    """The fine-tuned answers of one evaluation; its per-row losses when it recorded their token counts."""
    answers = [r["prediction"] for r in records]
    if all(r.get("loss") is not None and r.get("tokens") for r in records):
        return SideAnswers(answers, [(r["loss"] * r["tokens"], r["tokens"]) for r in records])
    return SideAnswers(answers)


def compare_evaluations(baseline: tuple[str, list[dict[str, Any]]], other: tuple[str, list[dict[str, Any]]],
                        tolerance: float = 1.0, compat: str | None = None) -> dict[str, Any]:
    """metrics.json's shape for two evaluations: `other` in the fine-tuned column against `baseline` in the base
    column, labelled with their names, with paired bootstrap intervals of every difference."""
    (base_name, base_records), (other_name, other_records) = baseline, other
    references = [r["reference"] for r in base_records]
    if references != [r["reference"] for r in other_records]:
        raise DataError(f"'{base_name}' and '{other_name}' were evaluated on different rows "
                        f"({len(base_records)} and {len(other_records)} rows, or other references)",
                        hint="evaluate both on the same held-out rows, e.g. with the same --data FILE")
    sides = {"finetuned": side_answers(other_records), "base": side_answers(base_records)}
    if not (sides["finetuned"].losses and sides["base"].losses):
        sides = {name: SideAnswers(given.answers) for name, given in sides.items()}
    per_side, extra = score_evaluation(references, sides, tolerance, compat)
    return {"rows": len(references), "labels": {"finetuned": other_name, "base": base_name},
            **{name: result["summary"] for name, result in per_side.items()}, **extra}
