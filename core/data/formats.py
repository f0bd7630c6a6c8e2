"""Row formats (Alpaca, ShareGPT, OpenAI messages) and LLaMA-Factory's dataset_info.json mappings."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping as PlaceholderValues
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.core.data.conversation import Conversation, Message
from tunedeck.core.data.placeholders import fill_placeholders
from tunedeck.core.data.records import Problem, Records, Row
from tunedeck.core.errors import DataError
from tunedeck.core.user_files import CONFIG_LIMIT, read_regular

FORMATS = ("alpaca", "sharegpt", "openai")

ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                  "history": "history", "tools": "tools"}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system", "tools": "tools"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}
# Role names seen in the wild, accepted besides the mapped tags.
ROLE_SYNONYMS = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
                 "model": "assistant", "system": "system", "observation": "tool", "tool": "tool",
                 "function": "tool", "function_call": "function_call"}


@dataclass
class Mapping:
    """How a file's columns and role tags map onto conversations (LLaMA-Factory's semantics)."""

    formatting: str  # how rows are converted: alpaca or sharegpt
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    name: str = ""  # the format as users call it: alpaca, sharegpt or openai

    @classmethod
    def default(cls, fmt: str) -> Mapping:
        if fmt == "alpaca":
            return cls("alpaca", dict(ALPACA_COLUMNS), name="alpaca")
        if fmt == "openai":
            columns = {"messages": "messages", "system": "system", "tools": "tools"}
            return cls("sharegpt", columns, dict(OPENAI_TAGS), name="openai")
        return cls("sharegpt", dict(SHAREGPT_COLUMNS), dict(SHAREGPT_TAGS), name="sharegpt")


def mapping_from_dataset_info(info_path: Path, name: str) -> tuple[Path, Mapping]:
    """The data file and mapping of entry `name` in a LLaMA-Factory dataset_info.json."""
    where = str(info_path)
    raw = read_regular(info_path, DataError, limit=CONFIG_LIMIT, missing="dataset_info file not found",
                       hint="check data.dataset_info")
    try:
        info = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"not UTF-8 (byte 0x{raw[exc.start]:02x})", where=f"{where}:{line}",
                        hint="re-save the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", where=f"{where}:{exc.lineno}") from None
    except RecursionError:
        raise DataError("nested too deeply", where=where, hint="each entry is a flat description") from None
    if not isinstance(info, dict) or name not in info:
        known = ", ".join(sorted(info)) if isinstance(info, dict) else ""
        raise DataError(f"no entry '{name}'", where=where, hint=f"entries: {known}" if known else None)
    entry = info[name]
    if not isinstance(entry, dict):
        raise DataError(f"entry '{name}' is a {type(entry).__name__}, expected an object", where=where)
    if "file_name" not in entry:
        raise DataError(f"entry '{name}' has no file_name (hub datasets need a network)", where=where,
                        hint="download the file and set file_name")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        raise DataError(f"entry '{name}': formatting '{formatting}' is not supported", where=where,
                        hint="use alpaca or sharegpt")
    for key in ("columns", "tags"):
        given = entry.get(key, {})
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise DataError(f"entry '{name}': {key} must map names to column names", where=where)
    mapping = Mapping.default(formatting)
    mapping.columns.update(entry.get("columns", {}))
    if formatting == "sharegpt":
        mapping.tags.update(entry.get("tags", {}))
    return _data_file(info_path, name, entry["file_name"]), mapping


def _data_file(info_path: Path, name: str, file_name: object) -> Path:
    """An entry's file_name, which must name a file inside the dataset_info.json's folder (judged by the name:
    '..' and absolute paths are refused; a symlink placed there by the user is followed as usual)."""
    folder = Path(os.path.abspath(info_path.parent))
    path = Path(os.path.normpath(folder / file_name)) if isinstance(file_name, str) and file_name else None
    if path is None or path == folder or not path.is_relative_to(folder):
        raise DataError(f"entry '{name}': file_name {file_name!r} points outside {folder}", where=str(info_path),
                        hint="keep the data files beside dataset_info.json (or in folders under it)")
    return path


def detect_format(records: Records) -> str:
    """Guess the row format from the keys of the first rows."""
    for row in records.rows[:20]:
        keys = set(row.data)
        if "instruction" in keys or ("output" in keys and "input" in keys):
            return "alpaca"
        for column in ("conversations", "messages"):
            turns = row.data.get(column)
            if isinstance(turns, list) and turns and isinstance(turns[0], dict):
                return "openai" if "role" in turns[0] and column == "messages" else "sharegpt"
    first = sorted(records.rows[0].data) if records.rows else []
    raise DataError(
        f"cannot tell the format from the columns {first}",
        where=records.source,
        hint="expected Alpaca (instruction/input/output), ShareGPT (conversations) or OpenAI (messages); "
        "set data.format or describe the file in a dataset_info.json",
    )


def convert_row(row: Row, mapping: Mapping, placeholders: PlaceholderValues | None = None) -> Conversation:
    """One row as a conversation, {{name}} placeholders filled from `placeholders`; ValueError says why it cannot
    be one."""
    conv = (_alpaca_row if mapping.formatting == "alpaca" else _sharegpt_row)(row, mapping)
    return fill_placeholders(conv, placeholders)


def to_conversations(records: Records, mapping: Mapping, placeholders: PlaceholderValues | None = None
                     ) -> tuple[list[Conversation], list[Problem]]:
    """Normalize rows; rows that cannot be used become problems naming their row and line."""
    conversations: list[Conversation] = []
    problems = list(records.problems)
    for row in records.rows:
        try:
            conversations.append(convert_row(row, mapping, placeholders))
        except ValueError as exc:
            problems.append(Problem(row.index, row.line, str(exc)))
    return conversations, problems


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{what} is a {type(value).__name__}, expected text")


def _tools(row: Row, mapping: Mapping) -> list[dict[str, Any]] | None:
    raw = row.data.get(mapping.columns.get("tools", "tools"))
    if raw in (None, "", []):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"tools column is not valid JSON ({exc.msg})") from None
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ValueError("tools column must be a list of function schemas")
    return [t if "function" in t and t.get("type") == "function" else {"type": "function", "function": t}
            for t in raw]


def _alpaca_row(row: Row, mapping: Mapping) -> Conversation:
    cols = mapping.columns
    data = row.data
    prompt_key, response_key = cols.get("prompt", "instruction"), cols.get("response", "output")
    if prompt_key not in data:
        raise ValueError(f"missing column '{prompt_key}'")
    if response_key not in data:
        raise ValueError(f"missing column '{response_key}'")
    prompt = _text(data.get(prompt_key), prompt_key)
    query = _text(data.get(cols.get("query", "input")), cols.get("query", "input"))
    response = _text(data.get(response_key), response_key)
    messages: list[Message] = []
    system = _text(data.get(cols.get("system", "system")), "system")
    if system:
        messages.append(Message("system", system))
    history = data.get(cols.get("history", "history")) or []
    if not isinstance(history, list):
        raise ValueError("history must be a list of [prompt, response] pairs")
    for pair in history:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise ValueError("history must be a list of [prompt, response] pairs")
        messages += [Message("user", _text(pair[0], "history")), Message("assistant", _text(pair[1], "history"))]
    user = f"{prompt}\n{query}" if prompt and query else (prompt or query)
    messages += [Message("user", user), Message("assistant", response)]
    return Conversation(messages, row.index, row.line, _tools(row, mapping))


def _sharegpt_row(row: Row, mapping: Mapping) -> Conversation:
    column = mapping.columns.get("messages", "conversations")
    turns = row.data.get(column)
    if turns is None:
        raise ValueError(f"missing column '{column}'")
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ValueError(f"'{column}' must be a list of message objects")
    tags = mapping.tags
    by_tag = {tags.get("user_tag"): "user", tags.get("assistant_tag"): "assistant",
              tags.get("observation_tag"): "tool", tags.get("function_tag"): "function_call",
              tags.get("system_tag"): "system"}
    role_key, content_key = tags.get("role_tag", "from"), tags.get("content_tag", "value")
    messages: list[Message] = []
    system = _text(row.data.get(mapping.columns.get("system", "system")), "system")
    if system:
        messages.append(Message("system", system))
    for number, turn in enumerate(turns, start=1):
        tag = turn.get(role_key, turn.get("role", turn.get("from")))
        role = by_tag.get(tag) or ROLE_SYNONYMS.get(str(tag).lower())
        if role is None:
            raise ValueError(f"turn {number}: unknown role '{tag}'")
        content = turn.get(content_key, turn.get("content", turn.get("value")))
        if role == "function_call":
            messages.append(Message("assistant", "", [_tool_call(content, number)]))
        elif role == "assistant" and turn.get("tool_calls"):
            messages.append(Message("assistant", _text(content, f"turn {number}"), list(turn["tool_calls"])))
        else:
            messages.append(Message(role, _text(content, f"turn {number}")))
    return Conversation(messages, row.index, row.line, _tools(row, mapping))


def _tool_call(content: Any, number: int) -> dict[str, Any]:
    call = content
    if isinstance(content, str):
        try:
            call = json.loads(content)
        except json.JSONDecodeError:
            raise ValueError(f"turn {number}: function_call is not valid JSON") from None
    if not isinstance(call, dict) or "name" not in call:
        raise ValueError(f"turn {number}: function_call needs a name")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    return {"type": "function", "function": {"name": call["name"], "arguments": arguments}}
