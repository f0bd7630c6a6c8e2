"""Build a Config from presets, YAML files and --set overrides, with errors that name file and line."""

from __future__ import annotations

import difflib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunedeck.core.config import Config
from tunedeck.core.errors import ConfigError
from tunedeck.core.user_files import CONFIG_LIMIT, read_regular
from tunedeck.presets import PREFERRED_ORDER, PRESET_DIR

PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
KEY_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_DEPTH = 32  # a config nests four levels; deeper YAML is refused before it can exhaust the stack
# Keys holding file paths: a relative value is resolved against the folder of the file it came from.
PATH_KEYS = {("data", "path"), ("data", "val_path"), ("data", "dataset_info"), ("distributed", "hostfile")}
MODEL_PATH_KEY = ("model", "name_or_path")  # resolved only when the relative path exists


def user_preset_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "tunedeck" / "presets"


def preset_names() -> list[str]:
    """Every preset, shipped ones first in their preferred order, then the user's own."""
    shipped = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    ordered = [n for n in PREFERRED_ORDER if n in shipped] + [n for n in shipped if n not in PREFERRED_ORDER]
    user_dir = user_preset_dir()
    user = sorted(p.stem for p in user_dir.glob("*.yaml")) if user_dir.is_dir() else []
    return ordered + [n for n in user if n not in ordered]


def preset_path(name: str) -> Path:
    if not PRESET_NAME.match(name):
        raise ConfigError(f"invalid preset name {name!r}", where="--preset",
                          hint="a preset is named by letters, digits, '.', '_' and '-' (see `tunedeck presets`)")
    for folder in (PRESET_DIR, user_preset_dir()):
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path
    known = preset_names()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known presets: {', '.join(known)}"
    raise ConfigError(f"unknown preset '{name}'", where="--preset", hint=hint)


def preset_description(name: str) -> str:
    """The opening comment of a preset: when to use it."""
    lines = []
    for line in preset_path(name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


@dataclass
class Origin:
    """Where a value came from, for error messages and relative paths."""

    source: str
    line: int | None = None
    base_dir: Path | None = None

    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass
class ConfigBuilder:
    """Accumulates overlays (preset, files, --set) and validates them into a Config."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[tuple[str, ...], Origin] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def add_preset(self, name: str) -> ConfigBuilder:
        return self.add_file(preset_path(name), label=f"preset {name} ({preset_path(name)})")

    def add_file(self, path: str | Path, label: str | None = None) -> ConfigBuilder:
        path = Path(path)
        shown = label or str(path)
        text = read_config_text(path)
        data, lines = parse_yaml(text, str(path))
        self._merge(data, Origin(str(path), None, path.resolve().parent), lines=lines)
        self.sources.append(shown)
        return self

    def add_dict(self, data: dict[str, Any], source: str) -> ConfigBuilder:
        self._merge(data, Origin(source, None, Path.cwd()))
        self.sources.append(source)
        return self

    def add_override(self, assignment: str) -> ConfigBuilder:
        """Apply one `--set key.path=value`; the value is read as a YAML scalar or list."""
        key, sep, raw = assignment.partition("=")
        parts = tuple(key.strip().split("."))
        if not sep or not all(KEY_PART.match(p) for p in parts):
            raise ConfigError("expected key.path=value", where=f"--set {_printable(assignment)}",
                              hint="e.g. --set train.learning_rate=1e-4")
        where = f"--set {assignment}"
        control = next((c for c in raw if unicodedata.category(c) == "Cc" and c != "\t"), None)
        if control is not None:
            raise ConfigError(f"the value holds a control character ({_printable(control)})",
                              where=f"--set {key}", hint="one --set holds one line of text; use a config file")
        try:
            value = _load_value(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError):
            value = raw
        nested: dict[str, Any] = {}
        cursor = nested
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        self._merge(nested, Origin(where, None, Path.cwd()))
        self.sources.append(where)
        return self

    def _merge(self, overlay: dict[str, Any], origin: Origin, prefix: tuple[str, ...] = (),
               lines: dict[tuple[str, ...], int] | None = None) -> None:
        target = self.data
        for part in prefix:
            target = target.setdefault(part, {})
        for key, value in overlay.items():
            key_path = prefix + (str(key),)
            here = Origin(origin.source, (lines or {}).get(key_path), origin.base_dir)
            self.origins.pop(key_path, None)  # re-inserted: the origins' order is the order values were set
            self.origins[key_path] = here
            if isinstance(value, dict):
                if not isinstance(target.get(key), dict):
                    target[key] = {}
                self._merge(value, origin, key_path, lines)
            else:
                target[key] = _resolve_path(key_path, value, here)

    def build(self) -> Config:
        try:
            return Config.model_validate(self.data)
        except ValidationError as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: ValidationError) -> ConfigError:
        first = exc.errors()[0]
        loc = tuple(str(p) for p in first["loc"])
        origin = self._origin_for(loc, first["msg"])
        key = ".".join(loc) or "config"
        if first["type"] == "extra_forbidden":
            message = f"{key}: unknown key"
            hint = _suggest_key(loc)
        else:
            message = f"{key}: {first['msg'].removeprefix('Value error, ')}"
            given = first.get("input")
            hint = None if isinstance(given, dict | list) or given is None else f"got {given!r}"
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        return ConfigError(message, where=origin.where() if origin else ", ".join(self.sources) or None,
                           hint=hint)

    def _origin_for(self, loc: tuple[str, ...], message: str = "") -> Origin | None:
        """Where the value an error is about came from. A check of a whole section (e.g. 'save_strategy steps
        needs save_steps') is blamed on the latest source that set a key the message names, not on whichever
        source touched the section last."""
        if loc and loc in self.origins and loc not in self._sections():
            return self.origins[loc]
        named = [path for path in self.origins
                 if path[:len(loc)] == loc and len(path) == len(loc) + 1
                 and re.search(rf"\b{re.escape(path[-1])}\b", message)]
        if named:
            return self.origins[named[-1]]
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.origins:
                return self.origins[loc[:end]]
        return None

    def _sections(self) -> set[tuple[str, ...]]:
        """Key paths that hold a mapping (sections), as opposed to values."""
        return {path for path in self.origins if any(other[:len(path)] == path and len(other) > len(path)
                                                     for other in self.origins)}


def read_config_text(path: Path) -> str:
    """A config or preset file's text: a regular file of at most CONFIG_LIMIT bytes, in UTF-8."""
    raw = read_regular(path, ConfigError, limit=CONFIG_LIMIT, missing="config file not found", hint="check the path")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=f"{path}:{line}",
                          hint="save the file as UTF-8") from None


def _printable(text: str) -> str:
    """Text with control characters written as escapes, so it stays on the one line of an error."""
    return "".join(c if unicodedata.category(c) != "Cc" else repr(c)[1:-1] for c in text)


def preset_comments(path: str | Path) -> dict[tuple[str, ...], str]:
    """The inline `# advice` comment of each key path in a YAML file, e.g. ('lora', 'r') -> 'raise to 128 if ...'."""
    path = Path(path)
    text = read_config_text(path)
    _, key_lines = parse_yaml(text, str(path))
    lines = text.splitlines()
    comments = {}
    for key_path, line_no in key_lines.items():
        comment = _inline_comment(lines[line_no - 1])
        if comment:
            comments[key_path] = comment
    return comments


def _inline_comment(line: str) -> str | None:
    """The text after a '#' that starts a comment (outside quotes, after a space) on a line of YAML."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and i > 0 and line[i - 1] in " \t":
            return line[i + 1:].strip() or None
    return None


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (a config has no use for them; they build recursive values and alias
    bombs) and without nesting deeper than MAX_DEPTH."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a config",
                                              self.peek_event().start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _load_value(text: str) -> Any:
    """One YAML value (a --set value) read by the config loader."""
    loader = _ConfigLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse YAML to a dict plus the 1-based line of every mapping key path."""
    loader = None
    try:
        loader = _ConfigLoader(text)  # the reader refuses characters YAML does not allow (e.g. NUL) right here
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        ours = isinstance(exc, yaml.composer.ComposerError) and exc.context is None
        raise ConfigError(f"invalid YAML: {exc.problem}", where=where,
                          hint=None if ours else "check indentation and quoting") from None
    except yaml.reader.ReaderError as exc:
        where = f"{source}:{text.count(chr(10), 0, exc.position) + 1}"
        raise ConfigError(f"invalid YAML: {exc.reason} ({_printable(chr(exc.character))})", where=where,
                          hint="remove the character") from None
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # e.g. a 5000-digit number or a 13th month
        raise ConfigError(f"invalid YAML value: {_printable(str(exc).splitlines()[0] if str(exc) else '')}",
                          where=source) from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of sections (model:, data:, lora:, train: ...)", where=source)
    lines: dict[tuple[str, ...], int] = {}
    _key_lines(node, (), lines)
    return data, lines


def _key_lines(node: yaml.Node | None, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key_path = prefix + (str(key_node.value),)
        out[key_path] = key_node.start_mark.line + 1
        _key_lines(value_node, key_path, out)


def _resolve_path(key_path: tuple[str, ...], value: Any, origin: Origin) -> Any:
    if not isinstance(value, str) or value.startswith("builtin:") or origin.base_dir is None:
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    if key_path in PATH_KEYS:
        return str((origin.base_dir / expanded).resolve())
    if key_path == MODEL_PATH_KEY and (origin.base_dir / expanded).exists():
        return str((origin.base_dir / expanded).resolve())
    return value


def _suggest_key(loc: tuple[str, ...]) -> str:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    known = list(model.model_fields)
    close = difflib.get_close_matches(loc[-1], known, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"known keys here: {', '.join(known)}"


def load_config(preset: str | None = None, files: list[str | Path] = (), overrides: list[str] = ()) -> Config:
    """The usual way in: a preset, then config files, then --set overrides, later ones winning."""
    builder = ConfigBuilder()
    if preset:
        builder.add_preset(preset)
    for path in files:
        builder.add_file(path)
    for assignment in overrides:
        builder.add_override(assignment)
    return builder.build()


def dump_config(config: Config) -> str:
    """The fully resolved config as YAML, every field present, in section order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
