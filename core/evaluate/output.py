"""Write an evaluation's results: predictions.jsonl and .csv (one row per held-out row) and metrics.json."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.evaluate.heldout import HeldOutRow
from tunedeck.core.evaluate.layout import EvalLayout

CSV_SCORES = ("bleu4", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact", "json_valid")


def prediction_records(rows: list[HeldOutRow], results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per row: where it came from, prompt, reference, each model's answer, loss and scores."""
    records = []
    for index, row in enumerate(rows):
        record: dict[str, Any] = {
            "row": row.conversation.row, "line": row.conversation.line, "prompt": row.question,
            "messages": row.prompt, "reference": row.reference,
        }
        for side, prefix in (("finetuned", ""), ("base", "base_")):
            if side in results:
                result = results[side]
                record[prefix + "prediction"] = result["answers"][index]
                record[prefix + "loss"] = result["losses"][index]
                if "tokens" in result:  # with the loss: lets two evaluations' losses be compared row by row
                    record[prefix + "tokens"] = result["tokens"][index]
                record[prefix + "metrics"] = result["scores"][index]
        records.append(record)
    return records


def write_predictions(layout: EvalLayout, rows: list[HeldOutRow], results: dict[str, dict[str, Any]]) -> None:
    records = prediction_records(rows, results)
    layout.root.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.predictions_jsonl,
                 "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_atomic(layout.predictions_csv, predictions_csv(records, with_base="base" in results))


def predictions_csv(records: list[dict[str, Any]], with_base: bool) -> str:
    """The same rows flattened for a spreadsheet (with a BOM so spreadsheets read UTF-8, Chinese included)."""
    prefixes = ["", "base_"] if with_base else [""]
    header = ["row", "line", "prompt", "reference"]
    for prefix in prefixes:
        header += [prefix + "prediction", prefix + "loss"] + [prefix + s for s in CSV_SCORES]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for record in records:
        cells = [record["row"], record["line"], record["prompt"], record["reference"]]
        for prefix in prefixes:
            scores = record[prefix + "metrics"]
            cells += [record[prefix + "prediction"], record[prefix + "loss"]]
            cells += ["" if scores.get(s) is None else scores[s] for s in CSV_SCORES]
        writer.writerow(cells)
    return "\ufeff" + buffer.getvalue()


def write_metrics(layout: EvalLayout, metrics: dict[str, Any]) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.metrics, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
