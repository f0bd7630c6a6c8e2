"""Ollama Modelfiles: quoting values so Ollama's parser reads them back exactly, and rendering one per quant."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from tunedeck.core.config import SamplingConfig
from tunedeck.core.errors import ConfigError


def _printable(ch: str) -> bool:
    """Go's strconv.IsPrint, which Ollama's parser uses to keep a character (tabs and newlines pass separately)."""
    if ch == " ":
        return True
    return unicodedata.category(ch)[0] in "LMNPS"


def quote_value(text: str, what: str) -> str:
    """`text` as a Modelfile value Ollama's parser turns back into exactly `text`.

    Ollama ends a \"\"\"-quoted value at the first line end where everything read so far, stripped, ends with
    \"\"\". There is no escape character, so a \"\"\" inside a line is fine; a line (other than the last) that ends
    with \"\"\" cannot be written, nor can characters the parser drops (control and format characters).
    """
    dropped = sorted({ch for ch in text if ch not in "\t\r\n" and not _printable(ch)})
    if dropped:
        names = ", ".join(f"U+{ord(ch):04X}" for ch in dropped[:5])
        raise ConfigError(f"{what} contains characters Ollama's Modelfile parser drops ({names})",
                          where=what, hint="remove control and zero-width characters")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, line in enumerate(lines[:-1], start=1):
        if line.rstrip().endswith('"""'):
            raise ConfigError(f'line {number} of {what} ends with """, which ends a Modelfile value early',
                              where=what, hint='add a character after the """ (e.g. a full stop)')
    if text.strip() != text and text.strip() == "":
        raise ConfigError(f"{what} is only whitespace", where=what)
    return f'"""{text}"""'


@dataclass(frozen=True)
class ModelfileSpec:
    gguf_file: str  # relative to the Modelfile's folder
    template: str
    system: str | None
    stops: list[str]
    num_ctx: int
    sampling: SamplingConfig
    comment: str = ""


def render_modelfile(spec: ModelfileSpec) -> str:
    lines = [f"# {line}" for line in spec.comment.splitlines()]
    lines.append(f"FROM ./{spec.gguf_file}")
    lines.append(f"TEMPLATE {quote_value(spec.template, 'the chat template')}")
    if spec.system:
        lines.append(f"SYSTEM {quote_value(spec.system, 'the system prompt')}")
    for stop in spec.stops:
        if '"' in stop or any(not _printable(ch) for ch in stop):
            raise ConfigError(f"stop token {stop!r} cannot be written into a Modelfile", where="tokenizer")
        lines.append(f'PARAMETER stop "{stop}"')
    s = spec.sampling
    lines += [
        f"PARAMETER num_ctx {spec.num_ctx}",
        f"PARAMETER temperature {s.temperature:g}",
        f"PARAMETER top_p {s.top_p:g}",
        f"PARAMETER top_k {s.top_k}",
        f"PARAMETER repeat_penalty {s.repeat_penalty:g}",
    ]
    return "\n".join(lines) + "\n"
