"""The chat worker's JSON-lines protocol: requests in on stdin, replies out on stdout, and the settings they carry."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

PROTOCOL_VERSION = 1
ROLES = ("system", "user", "assistant")


@dataclass
class Settings:
    """Generation settings for one answer; temperature 0 means greedy."""

    system: str | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    json_mode: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Settings:
        """Settings from a request, refusing unknown names and out-of-range values with a readable message."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        settings = cls(**data)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0.0 <= float(self.temperature) <= 5.0:
            raise ValueError("temperature must be between 0 and 5")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if int(self.top_k) < 0:
            raise ValueError("top_k must be 0 (off) or more")
        if not 0.5 <= float(self.repetition_penalty) <= 3.0:
            raise ValueError("repetition_penalty must be between 0.5 and 3")
        if not 1 <= int(self.max_new_tokens) <= 32768:
            raise ValueError("max_new_tokens must be between 1 and 32768")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("stop must be a list of non-empty strings")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerateRequest:
    id: str
    messages: list[dict[str, str]]
    settings: Settings
    adapter: bool = True  # False: answer as the base model (adapter disabled); only backends with an adapter


def with_system(messages: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """The conversation with the settings' system prompt first, unless it already starts with one."""
    if not system or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system}, *messages]


def parse_request(line: str) -> dict[str, Any]:
    """One request line as a dict with a known 'op'; ValueError with a readable message otherwise."""
    try:
        request = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON line: {exc.msg} at column {exc.colno}") from None
    if not isinstance(request, dict) or request.get("op") not in ("generate", "load", "cancel", "ping", "quit"):
        raise ValueError("each line must be an object with op: generate | load | cancel | ping | quit")
    return request


def generate_request(request: dict[str, Any]) -> GenerateRequest:
    """A generate op checked: an id, a non-empty list of {role, content} messages ending with the user's turn."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("generate needs a non-empty 'messages' list")
    for message in messages:
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise ValueError(f"each message needs role ({' | '.join(ROLES)}) and string content; got {message!r}")
    if messages[-1]["role"] != "user":
        raise ValueError("the last message must be the user's")
    return GenerateRequest(id=str(request.get("id", "")), messages=[dict(m) for m in messages],
                           settings=Settings.from_dict(request.get("settings")),
                           adapter=bool(request.get("adapter", True)))


def check_json(text: str) -> tuple[bool, str | None]:
    """Whether an answer is one JSON value (surrounding spaces allowed), and where parsing failed if not."""
    stripped = text.strip()
    if not stripped:
        return False, "empty answer"
    try:
        json.loads(stripped)
    except json.JSONDecodeError as exc:
        return False, f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return True, None


def reply(kind: str, **payload: Any) -> str:
    """A reply line: ready | token | done | error | pong | bye."""
    return json.dumps({"v": PROTOCOL_VERSION, "type": kind, **payload}, ensure_ascii=False)
