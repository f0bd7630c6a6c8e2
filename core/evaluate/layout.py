"""Where a run's evaluation lives (runs/<id>/eval/) and what was asked of it (the request)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tunedeck.core.jobs.folder import JobFolder
from tunedeck.core.jobs.runs import RunDir


@dataclass
class EvalRequest:
    """What to evaluate: held-out rows (the run's own, or a file), how many, how long the answers may be."""

    data: str | None = None  # a held-out file; None: the run's validation file or split
    compare_base: bool = False  # also score the base model (adapter off)
    max_rows: int | None = None
    max_new_tokens: int | None = None  # None: the longest reference's length plus 32 tokens
    batch_size: int = 8
    checkpoint: str = "best"  # best | last | a checkpoint's step number
    tolerance: float = 1.0  # numeric JSON fields agree within +-tolerance
    compat: str | None = None  # "llamafactory": also score the answers as LLaMA-Factory's predict stage does

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EvalRequest:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


@dataclass(frozen=True)
class EvalLayout(JobFolder):

    @classmethod
    def for_run(cls, run: RunDir) -> EvalLayout:
        return cls(run.path / "eval")

    @property
    def predictions_jsonl(self) -> Path:
        return self.root / "predictions.jsonl"

    @property
    def predictions_csv(self) -> Path:
        return self.root / "predictions.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"
