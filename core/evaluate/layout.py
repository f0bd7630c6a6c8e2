"""Where a run's evaluation lives (runs/<id>/eval/) and what was asked of it (the request)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.runs import RunDir, pid_alive


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EvalRequest:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


@dataclass(frozen=True)
class EvalLayout:
    root: Path

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

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def request(self) -> Path:
        return self.root / "request.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def log(self) -> Path:
        return self.root / "worker.log"

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def update_status(self, **values: Any) -> None:
        status = self.read_status()
        status.update(values, updated_at=time.time())
        write_atomic(self.status, json.dumps(status, indent=2, ensure_ascii=False) + "\n")

    def running(self) -> bool:
        status = self.read_status()
        pid = status.get("pid")
        return status.get("status") in ("starting", "running") and bool(pid) and pid_alive(int(pid))
