"""What a chat leaves behind: conversations as JSONL and a library of saved prompts, in the run's eval/ folder."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tunedeck.core.atomic import write_atomic
from tunedeck.core.private import private_dir


def eval_dir(run: str | Path | None, model_path: str | None = None) -> Path:
    """runs/<id>/eval for a run's model; a folder in tunedeck's cache for a model file of no run."""
    if run:
        return Path(run) / "eval"
    from tunedeck.core.models.loading import cache_dir

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model_path or "model").name).strip("-.") or "model"
    return cache_dir() / "chats" / name


class ConversationLog:
    """eval/chat-<time>.jsonl: one line per answer, with the messages it answered and how it was made."""

    def __init__(self, folder: Path):
        self.path = folder / f"chat-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"

    def append(self, record: dict[str, Any]) -> None:
        private_dir(self.path.parent)  # conversations are the user's own
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"t": round(time.time(), 3), **record}, ensure_ascii=False) + "\n")


class PromptLibrary:
    """eval/prompts.json: saved prompts, each with the JSON mode and system prompt it was saved with."""

    def __init__(self, folder: Path):
        self.path = folder / "prompts.json"

    def load(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: not readable as JSON ({exc}); fix or delete the file") from None
        return [p for p in data if isinstance(p, dict) and isinstance(p.get("prompt"), str)]

    def add(self, prompt: str, json_mode: bool = False, system: str | None = None) -> list[dict[str, Any]]:
        """Save a prompt (a prompt saved again moves to the end with its new settings)."""
        prompts = [p for p in self.load() if p["prompt"] != prompt]
        prompts.append({"prompt": prompt, "json_mode": json_mode, "system": system, "saved_at": round(time.time())})
        self._write(prompts)
        return prompts

    def remove(self, index: int) -> list[dict[str, Any]]:
        prompts = self.load()
        if 0 <= index < len(prompts):
            del prompts[index]
            self._write(prompts)
        return prompts

    def _write(self, prompts: list[dict[str, Any]]) -> None:
        private_dir(self.path.parent)
        write_atomic(self.path, json.dumps(prompts, indent=2, ensure_ascii=False) + "\n")
