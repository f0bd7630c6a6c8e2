"""The export's report.json: each model's size, perplexity, speed and answer, and every check's outcome."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunedeck.core.export.layout import ExportLayout
from tunedeck.core.stream.events import ExportFinished


def build_report(layout: ExportLayout, source: dict[str, Any], chat: dict[str, Any], dtype: str, base_gguf: Path,
                 quants: dict[str, Path], results: dict[str, Any]) -> dict[str, Any]:
    """The report: `source` (run, checkpoint, adapter), the converted GGUF, `chat` (format, stops, system prompt,
    context, prompt, held-out set), a row per model and a row per check."""
    merged = results["merged"]
    rows = [{
        "name": "merged", "path": str(layout.merged), "type": dtype,
        "size_bytes": sum(p.stat().st_size for p in layout.merged.rglob("*.safetensors")),
        "perplexity": merged["quality"].get("perplexity"), "tokens_per_s": merged["quality"].get("tokens_per_s"),
        "gen_tokens_per_s": merged["stop"].get("gen_tokens_per_s"), "answer": merged["stop"].get("answer"),
        "ended_on": merged["stop"].get("ended_on"),
    }]
    checks = [_check_row("modelfile", "TEMPLATE", results["modelfile"]), _check_row("stop", "merged", merged["stop"])]
    for quant, path in quants.items():
        r = results[quant]
        rows.append({
            "name": quant, "path": str(path), "type": quant, "size_bytes": path.stat().st_size,
            "modelfile": str(layout.modelfile(quant)), "perplexity": r["quality"].get("perplexity"),
            "ratio_to_merged": r["quality"].get("ratio_to_merged"), "tokens_per_s": r["quality"].get("tokens_per_s"),
            "gen_tokens_per_s": r["stop"].get("gen_tokens_per_s"), "answer": r["stop"].get("answer"),
            "ended_on": r["stop"].get("ended_on"),
        })
        checks += [_check_row(name, quant, r[name]) for name in ("template", "stop", "quality", "ollama")]
    return {
        **source, "created_at": time.time(),
        "gguf": {"path": str(base_gguf), "size_bytes": base_gguf.stat().st_size},
        **chat, "models": rows, "checks": checks,
        "passed": all(c["passed"] is not False for c in checks),
    }


def _check_row(name: str, target: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "target": target, "passed": result.get("passed"), "message": result.get("message", "")}


def finished_event(report: dict[str, Any], path: Path) -> ExportFinished:
    """The export_finished event for a written report: completed, naming the checks that failed, if any."""
    failed = [c for c in report["checks"] if c["passed"] is False]
    message = (f"{len(failed)} check(s) failed: " + ", ".join(f"{c['name']} ({c['target']})" for c in failed)
               if failed else "every check passed")
    return ExportFinished(status="completed", report=str(path), message=message)
