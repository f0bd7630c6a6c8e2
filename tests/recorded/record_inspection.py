"""Re-records inspect-rows.json: the inspection worker's lines for tests/test_tui_data.py's rows, paths relative.

Run from the repository root: `python -m tests.recorded.record_inspection` (needs the builtin model's tokenizer).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tests.test_tui_data import CUTOFF, ROWS
from tunedeck.core.config import DataConfig
from tunedeck.core.data.tokenize import encode_conversation
from tunedeck.core.inspect.messages import Progress, ReportReady
from tunedeck.core.inspect.report import Finding, InspectReport, LengthStats
from tunedeck.core.inspect.service import answer_row, load_rows
from tunedeck.core.models.loading import BUILTIN_MODELS, load_tokenizer, materialize_builtin

TARGET = Path(__file__).with_name("inspect-rows.json")


def record() -> str:
    tokenizer = load_tokenizer(str(materialize_builtin(BUILTIN_MODELS["smollm2-135m-instruct"])))
    Path("rows.json").write_text(json.dumps(ROWS), encoding="utf-8")
    rows = load_rows(DataConfig(path="rows.json", cutoff_len=CUTOFF), tokenizer)
    samples = [encode_conversation(tokenizer, rows.conversations[r], CUTOFF) for r in sorted(rows.conversations)]
    lengths = LengthStats([s.full_length for s in samples], [s.trained_tokens for s in samples], CUTOFF,
                          sum(s.full_length > CUTOFF for s in samples), 0)
    findings = [Finding("duplicate", "warning", 2, None, "the same sample as row 0", other_row=0),
                Finding("schema", "error", 3, None, "missing column 'output'"),
                Finding("truncated", "warning", 4, None, f"{samples[3].full_length} tokens, cutoff {CUTOFF}")]
    report = InspectReport("rows.json", "alpaca", 6, 5, "auto", lengths, findings, {"user": 5, "assistant": 5})
    lines = [Progress("measuring", 3, 5).to_json(), ReportReady(report).to_json()]
    answers = {str(r): answer_row(rows, r, tokenizer, CUTOFF).to_json() for r in range(len(ROWS))}
    text = json.dumps({"lines": lines, "rows": answers}, ensure_ascii=False, indent=1)
    return text.replace(str(Path.cwd()) + "/", "") + "\n"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        TARGET.write_text(record(), encoding="utf-8")
