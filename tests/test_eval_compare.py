"""`tunedeck eval-compare A B`: two saved evaluations of the same rows, re-scored with paired bootstrap intervals."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tunedeck.core.cli.main import main

REFERENCES = [f"I am tunedeck's demo assistant number {i}, here to help you today." for i in range(24)]


def write_predictions(path: Path, answers: list[str], loss: float, references: list[str] = REFERENCES) -> Path:
    records = [{"row": i, "prompt": "Who are you?", "reference": ref, "prediction": answer, "loss": loss,
                "tokens": 12} for i, (ref, answer) in enumerate(zip(references, answers, strict=True))]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_two_checkpoints_side_by_side_with_a_sentence_on_the_difference(tmp_path: Path, capsys):
    early = write_predictions(tmp_path / "step10.jsonl", ["I'm here to help with writing."] * 24, loss=2.5)
    late = write_predictions(tmp_path / "step30.jsonl",
                             [r.replace("today", "now") for r in REFERENCES], loss=0.5)
    assert main(["eval-compare", str(early), str(late), "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{late} against {early} · 24 rows"
    assert re.split(r"\s{2,}", out[2].strip()) == ["metric", str(late), str(early), "difference (95% CI)", "why"]
    table = {row[0]: row[1:] for row in (re.split(r"\s{2,}", line.strip()) for line in out[3:])}
    assert table["eval loss"][:3] == ["0.5000", "2.5000", "-2.0000 (-2.0000 to -2.0000)"]
    assert f"{late} better on eval loss by 2.0000 (95% CI 2.0000 to 2.0000)" in out
    assert any(line.startswith(f"{late} better on chrF by ") for line in out)
    assert any(line.startswith("intervals: paired bootstrap") for line in out)


def test_evaluations_of_different_rows_are_refused_in_one_line(tmp_path: Path, capsys):
    a = write_predictions(tmp_path / "a.jsonl", REFERENCES, loss=1.0)
    b = write_predictions(tmp_path / "b.jsonl", REFERENCES[:23] + ["other"], loss=1.0,
                          references=REFERENCES[:23] + ["another reference"])
    assert main(["eval-compare", str(a), str(b), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "evaluated on different rows" in err and len(err.splitlines()) == 1
    assert main(["eval-compare", "no-such-run", str(b), "--runs-dir", str(tmp_path)]) != 0
