"""Checks on the text of each turn: mojibake (fixed with ftfy), control and invisible characters, personal data,
template placeholders, and answers that must be JSON."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter

from tunedeck.core.data.conversation import Conversation, Message
from tunedeck.core.data.placeholders import find_placeholders
from tunedeck.core.inspect.report import Finding

# A UTF-8 lead byte read as Latin-1 / cp1252 followed by a continuation byte read the same way: the mark of
# double-encoded UTF-8. Only turns with this mark go through ftfy, which decides and repairs.
_MOJIBAKE_HINT = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
                            "\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]")

PII_PATTERNS = {
    "email": r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "id_card": r"(?<![\dA-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
               r"(?![\dA-Za-z])|(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)",
    "ip": r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])",
    "phone": r"(?<![\d\w])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![\d\w])"
             r"|(?<!\d)1[3-9]\d{9}(?!\d)",
}
_PII = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in PII_PATTERNS.items()))
PII_LABELS = {"email": "[EMAIL]", "id_card": "[ID]", "ip": "[IP]", "phone": "[PHONE]"}
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_JSON_REQUEST = re.compile(r"\bjson\b", re.IGNORECASE)
_FENCE = re.compile(r"^```json\s*\n(.*?)\n?```$", re.DOTALL | re.IGNORECASE)
_OPENS_LIKE_JSON = re.compile(r'\{\s*["}]|\[\s*[\[{"\d\]-]')
_MAYBE_PII = re.compile(r"[\d@]")


# Control characters (C0 but tab, line feed and carriage return; DEL; C1), NUL included; zero-width characters
# that are never needed (zero-width space, word joiner, BOM inside text, Mongolian vowel separator); and the
# bidirectional controls that reorder text on screen. Zero-width (non-)joiners are left alone: Persian, Indic
# scripts and emoji sequences need them.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u180e\u200b\u200e\u200f\u202a-\u202e"
                       "\u2060\u2066-\u2069\ufeff]")
_ANSI_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # a terminal control sequence such as ESC [31m
_C0_NAMES = ("NUL SOH STX ETX EOT ENQ ACK BEL BS HT LF VT FF CR SO SI DLE DC1 DC2 DC3 DC4 NAK SYN ETB CAN EM SUB "
             "ESC FS GS RS US").split()


def control_name(char: str) -> str:
    """A control or invisible character by name and code point, e.g. 'ESC (U+001B)'."""
    code = ord(char)
    name = (_C0_NAMES[code] if code < 32 else "DEL" if code == 127 else "C1 control" if code < 160
            else unicodedata.name(char, "invisible character"))
    return f"{name} (U+{code:04X})"


def find_controls(text: str) -> Counter[str]:
    """How many of each control / invisible character a text holds."""
    return Counter() if text.isprintable() else Counter(_CONTROLS.findall(text))


def strip_controls(text: str) -> tuple[str, int]:
    """The text without control and invisible characters (tab and line breaks kept), terminal escape sequences
    removed whole; and how many control characters were found (an escape sequence counts as its ESC)."""
    if text.isprintable():
        return text, 0
    text, sequences = _ANSI_SEQUENCE.subn("", text)
    text, controls = _CONTROLS.subn("", text)
    return text, sequences + controls


def _valid_id(number: str) -> bool:
    """Chinese resident ID checksum (ISO 7064 MOD 11-2); SSN-shaped numbers pass as they are."""
    if len(number) != 18:
        return True
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == number[17].upper()


def find_pii(text: str) -> list[tuple[str, str]]:
    """(kind, matched text) for every email, phone number, IP address and ID-card number in text."""
    found = []
    for match in _PII.finditer(text):
        kind = match.lastgroup or ""
        if kind != "id_card" or _valid_id(match.group()):
            found.append((kind, match.group()))
    return found


def redact(text: str) -> tuple[str, int]:
    """The text with personal data replaced by [EMAIL], [PHONE], [IP], [ID]; and how many were replaced."""
    count = 0

    def replace(match: re.Match) -> str:
        nonlocal count
        if match.lastgroup == "id_card" and not _valid_id(match.group()):
            return match.group()
        count += 1
        return PII_LABELS[match.lastgroup or ""]

    return _PII.sub(replace, text), count


def fix_encoding(text: str) -> str | None:
    """ftfy's repair of a turn that looks double-encoded; None when there is nothing to repair."""
    if text.isascii() or not _MOJIBAKE_HINT.search(text):
        return None
    import ftfy

    fixed = ftfy.fix_encoding(text)
    return fixed if fixed != text else None


def text_findings(conv: Conversation) -> list[Finding]:
    out: list[Finding] = []
    pii: dict[str, int] = {}
    placeholders: Counter[str] = Counter()
    system_wants_json = any(m.role == "system" and _JSON_REQUEST.search(m.content) for m in conv.messages)
    for number, message in enumerate(conv.messages, start=1):
        text = message.content
        placeholders.update(find_placeholders(text))
        out += _control_findings(conv, number, message)
        fixed = fix_encoding(text)
        if fixed is not None:
            out.append(Finding("encoding", "warning", conv.row, conv.line,
                               f"turn {number} ({message.role}) looks double-encoded: {_excerpt(text)}", fixed))
        elif "\ufffd" in text:
            out.append(Finding("encoding", "warning", conv.row, conv.line,
                               f"turn {number} ({message.role}) holds U+FFFD: characters lost when it was decoded",
                               "re-export the text from its source as UTF-8"))
        if _MAYBE_PII.search(text):
            for kind, _ in find_pii(text):
                pii[kind] = pii.get(kind, 0) + 1
        if message.role == "assistant":
            problem = _json_problem(message, system_wants_json)
            if problem:
                out.append(Finding("json_invalid", "error", conv.row, conv.line, f"turn {number}: {problem}",
                                   "fix the JSON so it parses (json.loads)"))
    if pii:
        listed = ", ".join(f"{n} {kind.replace('_', '-')}{'s' if n > 1 else ''}" for kind, n in pii.items())
        out.append(Finding("pii", "warning", conv.row, conv.line, f"personal data: {listed}",
                           "redact it: tunedeck data prepare --redact"))
    if placeholders:
        out.append(placeholder_finding(conv, placeholders))
    return out


def placeholder_finding(conv: Conversation, names: Counter[str]) -> Finding:
    """A warning for {{name}} placeholders left in a row: training would learn them literally."""
    listed = ", ".join("{{" + name + "}}" + (f" x{n}" if n > 1 else "") for name, n in names.items())
    fill = " ".join(f"--fill {name}=..." for name in names)
    return Finding("placeholder", "warning", conv.row, conv.line,
                   f"template placeholders {listed} would be trained literally",
                   f"fill them: {fill} (data.placeholders in a config)")


def _control_findings(conv: Conversation, number: int, message: Message) -> list[Finding]:
    found = find_controls(message.content)
    if not found:
        return []
    total = sum(found.values())
    listed = ", ".join(control_name(char) + (f" x{n}" if n > 1 else "") for char, n in found.most_common())
    return [Finding("control_chars", "warning", conv.row, conv.line,
                    f"turn {number} ({message.role}) holds {total} control or invisible character"
                    f"{'s' if total > 1 else ''}: {listed}", "strip them: tunedeck data prepare --fix-encoding")]


def _excerpt(text: str, width: int = 40) -> str:
    match = _MOJIBAKE_HINT.search(text)
    start = max(0, (match.start() if match else 0) - 10)
    return repr(text[start:start + width])


def _json_problem(message: Message, system_wants_json: bool) -> str | None:
    """Why an assistant turn that must be JSON does not parse: its tool call arguments always must; its text must
    when the system prompt asks for JSON or the text opens like JSON."""
    for call in message.tool_calls or []:
        arguments = (call.get("function") or call).get("arguments")
        if isinstance(arguments, str):
            try:
                json.loads(arguments)
            except json.JSONDecodeError as exc:
                return f"tool call arguments are not valid JSON ({exc.msg} at column {exc.colno})"
    text = message.content.strip()
    fenced = _FENCE.match(text)
    body = fenced.group(1).strip() if fenced else text
    if not body or not (system_wants_json or fenced or _OPENS_LIKE_JSON.match(body)):
        return None
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return f"the answer must be JSON but does not parse ({exc.msg} at line {exc.lineno} column {exc.colno})"
    return None
