"""The config tree as a flat list of editable fields (type, choices, bounds, help) and form values back to a Config."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import BaseModel

from tunedeck.core.atomic import write_atomic
from tunedeck.core.config import Config
from tunedeck.core.config_files import ConfigBuilder, preset_comments, preset_path, user_preset_dir
from tunedeck.core.errors import ConfigError

Kind = Literal["bool", "choice", "int", "float", "text", "list", "mapping"]
FORM_SOURCE = "the form"


@dataclass(frozen=True)
class FieldSpec:
    """One leaf of the config tree, as a form shows it."""

    path: tuple[str, ...]
    kind: Kind
    description: str
    choices: tuple[Any, ...] = ()
    optional: bool = False
    bounds: str = ""

    @property
    def key(self) -> str:
        return ".".join(self.path)


def config_fields(model: type[BaseModel] = Config, prefix: tuple[str, ...] = ()) -> list[FieldSpec]:
    """Every leaf field of the config tree in declaration order."""
    specs: list[FieldSpec] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            specs.extend(config_fields(annotation, prefix + (name,)))
            continue
        kind, choices, optional = _kind_of(annotation)
        specs.append(FieldSpec(prefix + (name,), kind, info.description or "", choices, optional,
                               _bounds(info.metadata)))
    return specs


def _kind_of(annotation: Any) -> tuple[Kind, tuple[Any, ...], bool]:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    optional = False
    if origin in (typing.Union, types.UnionType):
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            kind, choices, _ = _kind_of(rest[0])
            return kind, choices, optional
        return "list" if any(typing.get_origin(a) is list for a in rest) else "text", (), optional
    if origin is Literal:
        return "choice", tuple(args), optional
    if origin is list:
        return "list", (), optional
    if origin is dict:
        return "mapping", (), optional
    simple: dict[Any, Kind] = {bool: "bool", int: "int", float: "float"}
    return simple.get(annotation, "text"), (), optional


def _bounds(metadata: list[Any]) -> str:
    words = ((annotated_types.Ge, ">=", "ge"), (annotated_types.Gt, ">", "gt"),
             (annotated_types.Le, "<=", "le"), (annotated_types.Lt, "<", "lt"))
    parts = []
    for item in metadata:
        for cls, sign, attr in words:
            if isinstance(item, cls):
                parts.append(f"{sign} {getattr(item, attr)}")
    return ", ".join(parts)


def field_value(config: Config, spec: FieldSpec) -> Any:
    value: Any = config
    for part in spec.path:
        value = getattr(value, part)
    return value


def value_text(value: Any) -> str:
    """A value as the text an input shows: lists and mappings in YAML flow style, None as empty."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000,
                              sort_keys=False).strip()
    return str(value)


def text_value(spec: FieldSpec, text: str) -> Any:
    """What a typed-in text means for a field, read like a --set value (numbers and lists as YAML)."""
    text = text.strip()
    if not text:
        return None if spec.optional or spec.kind != "text" else ""
    if spec.kind in ("int", "float", "list", "mapping"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    return text


def nest(values: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in values.items():
        cursor = nested
        for part in path[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[path[-1]] = value
    return nested


def build_from_form(preset: str | None, values: dict[tuple[str, ...], Any]) -> Config:
    """The preset with the form's values on top, validated by the same builder as the command line."""
    builder = ConfigBuilder()
    if preset:
        builder.add_preset(preset)
    builder.add_dict(nest(values), FORM_SOURCE)
    return builder.build()


def field_error(preset: str | None, spec: FieldSpec, value: Any) -> str | None:
    """Why this one value is refused (checked on its own, on top of the preset), or None."""
    try:
        build_from_form(preset, {spec.path: value})
    except ConfigError as exc:
        if exc.message.startswith(f"{spec.key}:"):
            return exc.message.removeprefix(f"{spec.key}:").strip() + (f" ({exc.hint})" if exc.hint else "")
    return None


def preset_help(preset: str | None) -> dict[tuple[str, ...], str]:
    """The preset's inline advice comments by key path ({} without a preset)."""
    return preset_comments(preset_path(preset)) if preset else {}


def save_preset(name: str, config: Config, based_on: str | None = None) -> Path:
    """Write the values that differ from the defaults as a user preset; returns its path."""
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ConfigError(f"invalid preset name '{name}'", hint="letters, digits, '-', '_' and '.' only")
    defaults = Config()
    changed = {spec.path: field_value(config, spec) for spec in config_fields()
               if field_value(config, spec) != field_value(defaults, spec)}
    folder = user_preset_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    origin = f"based on preset {based_on}" if based_on else "based on the defaults"
    header = f"# {name}: saved from the tunedeck form on {datetime.now():%Y-%m-%d %H:%M}, {origin}.\n"
    write_atomic(path, header + yaml.safe_dump(nest(changed), sort_keys=False, allow_unicode=True))
    return path
