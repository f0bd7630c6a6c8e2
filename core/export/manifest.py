"""The export manifest: which steps finished, from which inputs, and fingerprints of what they wrote."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic

EDGE_BYTES = 1 << 20  # fingerprints hash the first and last MiB: catches truncation and replacement cheaply


def file_fingerprint(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(EDGE_BYTES))
        if size > 2 * EDGE_BYTES:
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
        elif size > EDGE_BYTES:
            digest.update(handle.read())
    return {"size": size, "sha256_edges": digest.hexdigest()}


def fingerprint(path: Path) -> dict[str, Any]:
    """A file's fingerprint, or a folder's: every file in it, by relative name."""
    if path.is_dir():
        return {"files": {str(p.relative_to(path)): file_fingerprint(p)
                          for p in sorted(path.rglob("*")) if p.is_file()}}
    return file_fingerprint(path)


def inputs_key(**inputs: Any) -> str:
    """A stable hash of everything a step's output depends on."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Manifest:
    """export/manifest.json: step name -> {key, outputs: {relative path: fingerprint}, result, finished_at}."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / "manifest.json"
        try:
            self.steps: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8")).get("steps", {})
        except (FileNotFoundError, json.JSONDecodeError, AttributeError):
            self.steps = {}

    def completed(self, step: str, key: str) -> dict[str, Any] | None:
        """The step's record if it finished with this key and its outputs are still exactly as written."""
        record = self.steps.get(step)
        if not record or record.get("key") != key:
            return None
        for rel, expected in record.get("outputs", {}).items():
            path = self.root / rel
            if not path.exists() or fingerprint(path) != expected:
                return None
        return record

    def output_fingerprint(self, step: str, rel: str) -> dict[str, Any] | None:
        return self.steps.get(step, {}).get("outputs", {}).get(rel)

    def record(self, step: str, key: str, outputs: list[Path], result: dict[str, Any] | None = None,
               seconds: float | None = None) -> dict[str, Any]:
        entry = {
            "key": key,
            "outputs": {str(p.relative_to(self.root)): fingerprint(p) for p in outputs},
            "result": result or {},
            "seconds": round(seconds, 2) if seconds is not None else None,
            "finished_at": time.time(),
        }
        self.steps[step] = entry
        self.save()
        return entry

    def forget(self, step: str) -> None:
        if self.steps.pop(step, None) is not None:
            self.save()

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"version": 1, "steps": self.steps}, indent=2, ensure_ascii=False) + "\n")
