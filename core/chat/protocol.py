"""The chat worker's JSON-lines protocol: requests in on stdin, typed replies out on stdout, and their settings."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from tunedeck.core.chat.resolve import ChatModel

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


@dataclass(frozen=True)
class Reply:
    """A line the worker writes: {"v": 1, "type": TYPE, **fields}."""

    TYPE: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "type": self.TYPE, **asdict(self)}

    def line(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)


@dataclass(frozen=True)
class Ready(Reply):
    """The model is loaded and answers from now on."""

    TYPE: ClassVar[str] = "ready"
    model: ChatModel

    def to_json(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "type": self.TYPE, "model": self.model.to_dict()}


@dataclass(frozen=True)
class Token(Reply):
    """A piece of the answer being streamed for request `id`."""

    TYPE: ClassVar[str] = "token"
    id: str
    text: str


@dataclass(frozen=True)
class Done(Reply):
    """A finished answer: its whole text, speed, how it ended and, for JSON, whether it parses."""

    TYPE: ClassVar[str] = "done"
    id: str
    text: str
    tokens: int = 0
    seconds: float = 0.0
    first_token_s: float | None = None
    tokens_per_s: float | None = None
    finish: str = "stop"  # stop | length | cancelled
    json_valid: bool | None = None  # None: not meant as JSON
    json_error: str | None = None
    adapter: bool = True
    model: str | None = None  # the model's label
    constrained: bool = False  # JSON mode enforced by a grammar (GGUF)


@dataclass(frozen=True)
class ErrorReply(Reply):
    """A request that failed (`id` set), or a worker that cannot go on (`fatal`: the model did not load)."""

    TYPE: ClassVar[str] = "error"
    id: str | None
    message: str
    fatal: bool = False

    def to_json(self) -> dict[str, Any]:
        data = {"v": PROTOCOL_VERSION, "type": self.TYPE, "id": self.id, "message": self.message}
        return {**data, "fatal": True} if self.fatal else data


@dataclass(frozen=True)
class Pong(Reply):
    TYPE: ClassVar[str] = "pong"
    id: str | None = None


@dataclass(frozen=True)
class Bye(Reply):
    """The worker is quitting."""

    TYPE: ClassVar[str] = "bye"


@dataclass(frozen=True)
class WorkerExit(Reply):
    """Not written by the worker: what its client reports when the process ends unasked (code, last stderr line)."""

    TYPE: ClassVar[str] = "exit"
    code: int | None
    message: str = ""


ChatReply = Ready | Token | Done | ErrorReply | Pong | Bye | WorkerExit
REPLY_TYPES: dict[str, type[Reply]] = {cls.TYPE: cls for cls in (Ready, Token, Done, ErrorReply, Pong, Bye, WorkerExit)}


def parse_chat_reply(data: dict[str, Any]) -> ChatReply | None:
    """A reply line's object as its typed reply; None for a type this side does not know (the protocol may grow).

    Raises ValueError for a known type with missing or malformed fields.
    """
    cls = REPLY_TYPES.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return None
    values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
    try:
        if cls is Ready:
            model = data["model"]
            values["model"] = ChatModel(**{f.name: model[f.name] for f in fields(ChatModel) if f.name in model})
        return cls(**values)  # type: ignore[return-value]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed {cls.TYPE} reply: {exc}") from None
