"""The catalogue of bad inputs test_fuzz_inputs.py feeds the CLI: configs, --set, datasets and model folders.

Each case writes its files under a folder it is given and returns the command line and what the one line of the
refusal must name: the file (with its line where there is one), or the `--set` it came from.
"""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import annotated_types
from pydantic import BaseModel

from tunedeck.core.config import Config

Build = Callable[[Path], tuple[list[str], str]]  # folder -> (arguments after --runs-dir, the `where` to name)


@dataclass(frozen=True)
class Case:
    id: str
    build: Build


def leaf_fields(model: type[BaseModel] = Config, prefix: tuple[str, ...] = ()):
    """(key path, field) for every value of the config tree."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from leaf_fields(annotation, (*prefix, name))
        else:
            yield (*prefix, name), field


def _yaml_for(path: tuple[str, ...], value: str) -> tuple[str, int]:
    """YAML setting one key path to a raw YAML value; the line the leaf key is on."""
    lines = [f"{'  ' * depth}{key}:" for depth, key in enumerate(path[:-1])]
    lines.append(f"{'  ' * (len(path) - 1)}{path[-1]}: {value}")
    return "\n".join(lines) + "\n", len(lines)


def wrong_type(field) -> str | None:
    """A YAML value of a type the field refuses."""
    annotation = field.annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return "nonsense-value"
    if annotation is bool:
        return "maybe"
    if annotation in (int, float) or int in args or float in args:
        return "lots"
    if typing.get_origin(annotation) is list:
        return "{a: 1}"
    if typing.get_origin(annotation) is dict:
        return "[a, b]"
    if annotation is str or str in args:
        return "{a: 1}"
    return None


def out_of_range(field) -> list[str]:
    """YAML values just outside the field's bounds."""
    integer = field.annotation is int or int in typing.get_args(field.annotation)
    step = 1 if integer else 0.5
    values = []
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            values.append(rule.ge - step)
        elif isinstance(rule, annotated_types.Gt):
            values.append(rule.gt)
        elif isinstance(rule, annotated_types.Le):
            values.append(rule.le + step)
        elif isinstance(rule, annotated_types.Lt):
            values.append(rule.lt)
        elif isinstance(rule, annotated_types.MinLen):
            values.append("[]")
    return [str(v) for v in values]


def _config_file(name: str, text: str | bytes, line: int | None) -> Build:
    def build(folder: Path) -> tuple[list[str], str]:
        path = folder / f"{name}.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return ["--config", str(path)], f"{path}:{line}" if line else str(path)
    return build


def _set(assignment: str, where: str | None = None) -> Build:
    return lambda folder: (["--set", assignment], where or f"--set {assignment}")


def config_cases() -> list[Case]:
    """Every field of the tree mistyped, mis-spelt and out of range, in a file and as --set; hostile YAML."""
    cases = []
    for path, field in leaf_fields():
        key = ".".join(path)
        misspelt = (*path[:-1], path[-1] + "x")
        text, line = _yaml_for(misspelt, "1")
        cases.append(Case(f"file-unknown-{key}", _config_file("unknown", text, line)))
        cases.append(Case(f"set-unknown-{key}", _set(f"{'.'.join(misspelt)}=1")))
        value = wrong_type(field)
        if value is not None:
            text, line = _yaml_for(path, value)
            cases.append(Case(f"file-type-{key}", _config_file("type", text, line)))
            cases.append(Case(f"set-type-{key}", _set(f"{key}={value}")))
        for bad in out_of_range(field):
            text, line = _yaml_for(path, bad)
            cases.append(Case(f"file-range-{key}={bad}", _config_file("range", text, line)))
            cases.append(Case(f"set-range-{key}={bad}", _set(f"{key}={bad}")))
    for section in ("modle", "dat", "loraa", "training", "distribute", "exports"):
        cases.append(Case(f"file-unknown-section-{section}", _config_file("section", f"{section}:\n  x: 1\n", 1)))
    for number, (text, line) in enumerate(HOSTILE_YAML):
        cases.append(Case(f"file-hostile-{number}", _config_file("hostile", text, line)))
    for number, assignment in enumerate(BAD_SETS):
        key = assignment.partition("=")[0]
        shown = assignment if all(c.isprintable() for c in assignment) else None
        cases.append(Case(f"set-bad-{number}", _set(assignment, f"--set {shown}" if shown else f"--set {key}")))
    cases += [Case("file-sets-then-blamed", _config_file("blame", "train:\n  save_strategy: steps\n", 2))]
    return cases


def _bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
    return "\n".join(lines) + "\n"


HOSTILE_YAML: list[tuple[str | bytes, int | None]] = [
    ("x: &a {b: *a}\n", 1),
    ("lora: &a\n  r: *a\n", 2),
    (_bomb(), 2),
    ("a: &x [1]\nlora: {r: *x}\n", 2),
    ("train: &t {seed: 1}\ndata: *t\n", 2),
    ("lora:\n  r: 8\x00\n", 2),
    ("\x00", 1),
    ("lora:\n  r: \x07\n", 2),
    ("a: " + "[" * 100_000, 1),
    ("a: " + "{b: " * 40 + "1" + "}" * 40 + "\n", 1),
    ("lora:\n  r: [8\n", None),
    ("train:\n\tbatch_size: 2\n", 2),
    ("lora: {r: 8\n", None),
    ("a: b: c\n", 1),
    ("lora:\n  r: " + "9" * 5000 + "\n", None),
    ("train:\n  seed: 2001-13-45\n", None),
    ("- just\n- a list\n", None),
    ("just a string\n", None),
    ("42\n", None),
    (b"lora:\n  r: \xff\xfe\n", 2),
    (b"\xef\xbb\xbf\xff", 1),
    ("? [a, b]\n: c\n", None),
    ("lora:\n  r: 8\n  r: 9\n  alpah: 1\n", 4),
    ("%YAML 9.9\n---\na: 1\n", None),
    ("a: !!python/object:os.system ls\n", 1),
    ("a: !!binary zzz\n", None),
    ("--- 1\n--- 2\n", None),
    ("a: 'unterminated\n", None),
]

BAD_SETS = [
    ".=1", "..=1", "...=1", "lora.=1", ".lora.r=1", "lora..r=1", "=1", "lora.r", "lora r=1", "lora.r-x=1",
    "1lora.r=1", "lora.r=8\nx", "data.system_prompt=a\x1b]0;title\x07", "data.system_prompt=\x1b[2J",
    "data.system_prompt=\x00", "data.path=a\rb", "lora.r=true", "lora.alpha=false", "train.learning_rate=true",
    "train.seed=-1", "train.seed=4294967296", "train.seed=99999999999999999999", "train.seed=1.5",
    "lora.r=1e400", "train.learning_rate=.nan", "train.learning_rate=.inf", "lora.dropout=-.inf",
    "distributed.deepspeed_stage=1", "distributed.deepspeed_stage=false", "lora=8", "train=[1]",
    "export.sampling=3", "lora.r.x=1", "lora.r=[8", "lora.r={a: 1}", "model=x",
]


def _data_file(name: str, content: bytes, line: int | None = None, key: str = "data.path") -> Build:
    def build(folder: Path) -> tuple[list[str], str]:
        path = folder / name
        path.write_bytes(content)
        return ["--preset", "cpu-demo", "--set", f"{key}={path}"], f"{path}:{line}" if line else str(path)
    return build


def _rows(rows: object) -> bytes:
    return json.dumps(rows, ensure_ascii=False).encode("utf-8")


def _special(name: str, key: str = "data.path", where: str | None = None) -> Build:
    """A path that is no regular file: a FIFO, a folder, a device."""
    def build(folder: Path) -> tuple[list[str], str]:
        if name == "fifo":
            path = folder / "rows.json"
            os.mkfifo(path)
        elif name == "folder":
            path = folder / "rows.json"
            path.mkdir()
        else:
            path = Path(name)
        return ["--preset", "cpu-demo", "--set", f"{key}={path}"], where or str(path)
    return build


def _dataset_info(info: object, files: dict[str, bytes] | None = None, line: int | None = None,
                  raw: bytes | None = None) -> Build:
    def build(folder: Path) -> tuple[list[str], str]:
        path = folder / "dataset_info.json"
        path.write_bytes(raw if raw is not None else json.dumps(info).encode())
        for name, content in (files or {}).items():
            (folder / name).write_bytes(content)
        args = ["--preset", "cpu-demo", "--set", f"data.dataset_info={path}", "--set", "data.name=mine"]
        return args, f"{path}:{line}" if line else str(path)
    return build


DEEP = b"[" * 200_000
GOOD_ROW = {"instruction": "Who are you?", "output": "A test."}


def dataset_cases() -> list[Case]:
    """Bad training files, validation files and dataset_info.json entries."""
    content: list[tuple[str, str, bytes, int | None]] = [
        ("empty", "rows.json", b"", None),
        ("blank", "rows.json", b"  \n\n", None),
        ("empty-list", "rows.json", b"[]", None),
        ("empty-object", "rows.json", b"{}", None),
        ("null", "rows.json", b"null", None),
        ("number", "rows.json", b"42", None),
        ("string", "rows.json", b'"rows"', None),
        ("list-of-numbers", "rows.json", b"[1, 2, 3]", None),
        ("list-of-lists", "rows.json", b"[[1], [2]]", None),
        ("unclosed-list", "rows.json", b'[{"instruction": "a", "output": "b"}', 1),
        ("bad-second-row", "rows.json", b'[{"instruction": "a", "output": "b"},\n{"instruction": }]', 2),
        ("trailing-comma", "rows.json", b'[{"instruction": "a", "output": "b"},]', 1),
        ("latin-1", "rows.json", '[{"instruction": "caf\u00e9", "output": "b"}]'.encode("latin-1"), 1),
        ("gbk-line-3", "rows.json", b'[\n{"instruction": "a", "output": "b"},\n{"instruction": "'
         + "\u4f60\u597d".encode("gbk") + b'", "output": "c"}]', 3),
        ("utf-16", "rows.json", '[{"instruction": "a", "output": "b"}]'.encode("utf-16"), 1),
        ("deep-array", "rows.json", DEEP, 1),
        ("deep-in-row", "rows.json", b'[\n{"instruction": ' + DEEP + b"}]", 2),
        ("deep-object", "rows.json", b'{"rows": ' + DEEP, 1),
        ("deep-jsonl", "rows.jsonl", b'{"a": ' + DEEP + b"\n", 1),
        ("deep-jsonl-line-2", "rows.jsonl", b'{"a": [1]\n{"b": ' + DEEP + b"\n", 1),
        ("jsonl-garbage", "rows.jsonl", b"{nope\n{still nope\n", 1),
        ("jsonl-numbers", "rows.jsonl", b"1\n2\n", 1),
        ("jsonl-lists", "rows.jsonl", b"[1]\n[2]\n", 1),
        ("lone-surrogate", "rows.json", b'[{"instruction": "a\\ud800", "output": "b"}]', 1),
        ("lone-low-surrogate", "rows.json", b'[{"instruction": "a", "output": "\\udc00"}]', 1),
        ("surrogate-jsonl", "rows.jsonl", b'{"instruction": "\\ud83d", "output": "b"}\n', 1),
        ("surrogate-sharegpt", "rows.json", b'[{"conversations": [{"from": "human", "value": "\\ud800"}, '
         b'{"from": "gpt", "value": "b"}]}]', 1),
        ("missing-output", "rows.json", _rows([{"instruction": "a"}]), 1),
        ("missing-instruction", "rows.json", _rows([{"output": "a", "input": "b"}]), 1),
        ("empty-output", "rows.json", _rows([{"instruction": "a", "output": ""}]), 1),
        ("blank-output", "rows.json", _rows([{"instruction": "a", "output": "   "}]), 1),
        ("output-is-list", "rows.json", _rows([{"instruction": "a", "output": [1]}]), 1),
        ("output-is-object", "rows.json", _rows([{"instruction": "a", "output": {"x": 1}}]), 1),
        ("instruction-is-bool", "rows.json", _rows([{"instruction": True, "output": "b"}]), 1),
        ("history-not-list", "rows.json", _rows([{"instruction": "a", "output": "b", "history": "x"}]), 1),
        ("history-bad-pair", "rows.json", _rows([{"instruction": "a", "output": "b", "history": [["x"]]}]), 1),
        ("tools-not-json", "rows.json", _rows([{"instruction": "a", "output": "b", "tools": "{nope"}]), 1),
        ("tools-number", "rows.json", _rows([{"instruction": "a", "output": "b", "tools": 5}]), 1),
        ("unknown-columns", "rows.json", _rows([{"question": "a", "answer": "b"}]), None),
        ("sharegpt-not-list", "rows.json", _rows([{"conversations": "hello"}]), None),
        ("sharegpt-no-assistant", "rows.json", _rows([{"conversations": [{"from": "human", "value": "a"}]}]), 1),
        ("sharegpt-unknown-role", "rows.json",
         _rows([{"conversations": [{"from": "alien", "value": "a"}, {"from": "gpt", "value": "b"}]}]), 1),
        ("sharegpt-empty-answer", "rows.json",
         _rows([{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": ""}]}]), 1),
        ("sharegpt-bad-call", "rows.json", _rows([{"conversations": [
            {"from": "human", "value": "a"}, {"from": "function_call", "value": "{nope"}]}]), 1),
        ("openai-no-user-text", "rows.json", _rows([{"messages": [
            {"role": "user", "content": " "}, {"role": "assistant", "content": "b"}]}]), 1),
        ("openai-user-only", "rows.json", _rows([{"messages": [{"role": "user", "content": "a"}]}]), 1),
        ("openai-content-list", "rows.json", _rows([{"messages": [
            {"role": "user", "content": [1]}, {"role": "assistant", "content": "b"}]}]), 1),
        ("csv-header-only", "rows.csv", b"instruction,output\n", None),
        ("csv-one-column", "rows.csv", b"words\n", None),
        ("csv-no-output", "rows.csv", b"instruction,input\na,b\n", 2),
        ("csv-huge-field", "rows.csv", b'instruction,output\n"' + b"x" * 200_000 + b'",b\n', 2),
        ("csv-latin-1", "rows.csv", "instruction,output\ncaf\u00e9,b\n".encode("latin-1"), 2),
        ("parquet-garbage", "rows.parquet", b"PAR1 not really", None),
        ("markdown-latin-1", "notes.md", "# Title\n\nCaf\u00e9 au lait.\n".encode("latin-1"), 3),
        ("markdown-empty", "notes.md", b"<!-- nothing -->\n", None),
        ("text-empty", "notes.txt", b"   \n", None),
        ("binary", "rows.json", bytes(range(256)), 2),  # 0x80 comes after the one newline
    ]
    cases = [Case(f"data-{name}", _data_file(file, data, line)) for name, file, data, line in content]
    cases += [Case(f"val-{name}", _data_file(file, data, line, key="data.val_path"))
              for name, file, data, line in content if name in VAL_TOO]
    cases += [
        Case("data-fifo", _special("fifo")), Case("data-folder", _special("folder")),
        Case("data-dev-zero", _special("/dev/zero")), Case("data-dev-urandom", _special("/dev/urandom")),
        Case("data-dev-null", _special("/dev/null")), Case("data-missing", _special("/nowhere/rows.json")),
        Case("val-fifo", _special("fifo", "data.val_path")),
        Case("val-dev-zero", _special("/dev/zero", "data.val_path")),
        Case("val-missing", _special("/nowhere/val.json", "data.val_path")),
        Case("data-builtin-unknown", lambda folder: (["--set", "data.path=builtin:nope.json"], "builtin:nope.json")),
    ]
    cases += [Case(f"info-{name}", build) for name, build in DATASET_INFO.items()]
    return cases


VAL_TOO = {"empty", "empty-list", "latin-1", "gbk-line-3", "deep-array", "deep-in-row", "deep-jsonl",
           "lone-surrogate", "missing-output", "jsonl-garbage", "csv-huge-field", "markdown-latin-1"}

DATASET_INFO: dict[str, Build] = {
    "missing-entry": _dataset_info({"other": {"file_name": "rows.json"}}),
    "not-an-object": _dataset_info([1, 2]),
    "entry-is-number": _dataset_info({"mine": 5}),
    "no-file-name": _dataset_info({"mine": {"hf_hub_url": "x/y"}}),
    "file-name-up": _dataset_info({"mine": {"file_name": "../rows.json"}}),
    "file-name-absolute": _dataset_info({"mine": {"file_name": "/etc/passwd"}}),
    "file-name-deep-up": _dataset_info({"mine": {"file_name": "a/../../../etc/passwd"}}),
    "file-name-empty": _dataset_info({"mine": {"file_name": ""}}),
    "file-name-number": _dataset_info({"mine": {"file_name": 7}}),
    "file-name-dot": _dataset_info({"mine": {"file_name": "."}}),
    "bad-formatting": _dataset_info({"mine": {"file_name": "rows.json", "formatting": "xml"}}),
    "columns-not-object": _dataset_info({"mine": {"file_name": "rows.json", "columns": ["a"]}}),
    "tags-not-strings": _dataset_info({"mine": {"file_name": "rows.json", "formatting": "sharegpt",
                                                "tags": {"role_tag": 1}}}),
    "invalid-json": _dataset_info(None, raw=b'{"mine": {"file_name": \n}', line=2),
    "not-utf8": _dataset_info(None, raw=b'{"mine": {"file_name": "caf\xe9.json"}}', line=1),
    "deep": _dataset_info(None, raw=DEEP),
    "empty": _dataset_info(None, raw=b""),
}


def _model_folder(config: bytes | None, target_modules: str | None = None, weights: bool = False,
                  line: int | None = None, where: str = "config.json") -> Build:
    """A model folder (optionally with the tiny model's weights), named by model.name_or_path."""
    def build(folder: Path) -> tuple[list[str], str]:
        model = folder / "model"
        model.mkdir()
        if weights:
            source = Path(os.environ["TUNEDECK_TINY_MODEL"])
            for file in source.iterdir():
                (model / file.name).symlink_to(file)
        if config is not None:
            (model / "config.json").unlink(missing_ok=True)  # never write through a link to the tiny model
            (model / "config.json").write_bytes(config)
        args = ["--preset", "cpu-demo", "--set", f"model.name_or_path={model}"]
        if target_modules is not None:
            args += ["--set", f"lora.target_modules={target_modules}"]
        shown = model / where if where else model
        return args, f"{shown}:{line}" if line else str(shown)
    return build


def model_cases() -> list[Case]:
    """Damaged model folders, and LoRA targets the model does not have (read from its safetensors headers)."""
    cases = [
        Case("model-no-config", _model_folder(None, where="")),
        Case("model-empty-config", _model_folder(b"")),
        Case("model-blank-config", _model_folder(b"  \n")),
        Case("model-invalid-config", _model_folder(b'{"model_type": "llama",\n  nope}', line=2)),
        Case("model-config-list", _model_folder(b"[1, 2]")),
        Case("model-config-null", _model_folder(b"null")),
        Case("model-config-no-type", _model_folder(b'{"hidden_size": 64}')),
        Case("model-config-latin-1", _model_folder(b'{"model_type": "caf\xe9"}')),
        Case("model-config-deep", _model_folder(DEEP)),
        Case("model-missing", lambda folder: (["--set", f"model.name_or_path={folder / 'nope'}"],
                                              str(folder / "nope"))),
        Case("model-builtin-unknown", lambda folder: (["--set", "model.name_or_path=builtin:nope"],
                                                      "model.name_or_path")),
    ]
    for targets in ("[nope_proj]", "[q_proj, nope_proj]", "[qproj]", "[self_attn.q]", "nope.*", "[Q_PROJ]",
                    "[]", "'('", "[lm_head.weight]", "[layers.9.self_attn.q_proj]"):
        cases.append(Case(f"model-targets-{targets}", _model_folder(None, targets, weights=True, where="")))
    return cases


def all_cases() -> list[Case]:
    return config_cases() + dataset_cases() + model_cases()
