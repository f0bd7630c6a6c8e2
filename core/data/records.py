"""Read a data file (JSON, JSONL, CSV, Parquet) into rows, naming file and line for anything unreadable."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.core.errors import DataError, DatasetInfoChosen
from tunedeck.core.user_files import read_regular
from tunedeck.presets import DATASET_DIR

MAX_LINE_BYTES = 64 * 1024 * 1024  # one JSONL row larger than this is refused, not loaded
TOO_DEEP = "nested too deeply (the JSON reader's limit is about 1000 levels)"


@dataclass(slots=True)
class Problem:
    """Something wrong with one row: where it is and what to do."""

    row: int
    line: int | None
    message: str

    def where(self, source: str) -> str:
        return f"{source}:{self.line}" if self.line else f"{source} row {self.row}"


@dataclass(slots=True)
class Row:
    """One row: its 0-based index in the file, its 1-based line where the format has lines, its data."""

    index: int
    line: int | None
    data: dict[str, Any]


@dataclass
class Records:
    source: str
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def resolve_data_path(path: str) -> Path:
    """A data path as given in the config: 'builtin:NAME' or a file system path."""
    if path.startswith("builtin:"):
        name = path.removeprefix("builtin:")
        resolved = DATASET_DIR / name
        if not resolved.is_file():
            known = ", ".join(sorted(p.name for p in DATASET_DIR.glob("*")))
            raise DataError(f"no builtin dataset '{name}'", where=path, hint=f"builtin datasets: {known}")
        return resolved
    return Path(path).expanduser()


def read_records(path: Path) -> Records:
    if path.is_dir():
        raise DataError("is a folder, expected a data file", where=str(path),
                        hint="point data.path at a .json, .jsonl or .csv file")
    raw = read_regular(path, DataError, missing="data file not found", hint="check data.path")
    if not raw.strip():
        raise DataError("data file is empty", where=str(path), hint="it needs at least one row")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    text = _decode(raw, path)
    if suffix == ".jsonl" or (suffix != ".json" and suffix != ".csv" and _looks_like_jsonl(text)):
        return _read_jsonl(text, str(path))
    if suffix == ".csv":
        return _read_csv(text, str(path))
    return _read_json(text, str(path))


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"not UTF-8 (byte 0x{raw[exc.start]:02x} at line {line})",
            where=f"{path}:{line}",
            hint="re-save the file as UTF-8, e.g. iconv -f GBK -t UTF-8 in.json > out.json",
        ) from None


def _looks_like_jsonl(text: str) -> bool:
    first = text.lstrip()[:1]
    if first != "{":
        return False
    try:
        json.loads(text)
        return False
    except json.JSONDecodeError:
        return True
    except RecursionError:
        return "\n" in text.strip()


def _read_json(text: str, source: str) -> Records:
    if text.lstrip().startswith("["):
        return _read_json_array(text, source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):  # one object per line in a .json file
            return _read_jsonl(text, source)
        raise _json_error(exc, source) from None
    except RecursionError:
        raise DataError(TOO_DEEP, where=f"{source}:1", hint="rows are flat objects of text fields") from None
    if isinstance(data, dict):
        if is_dataset_info(data):
            folder = Path(source).parent
            local = [name for name, entry in data.items()
                     if isinstance(entry.get("file_name"), str) and (folder / entry["file_name"]).exists()]
            raise DatasetInfoChosen(source, local, len(data))
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError("expected a JSON list of rows", where=source,
                            hint="wrap the rows in [ ... ] or use one object per line (.jsonl)")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError("expected a JSON list of rows", where=source, hint="wrap the rows in [ ... ]")
    if not data:
        raise DataError("the list of rows is empty", where=source, hint="it needs at least one row")
    records = Records(source)
    for index, row in enumerate(data):
        if isinstance(row, dict):
            records.rows.append(Row(index, None, row))
        else:
            records.problems.append(Problem(index, None, f"row is a {type(row).__name__}, expected an object"))
    return records


# Keys only a LLaMA-Factory dataset_info.json entry has.
_INFO_KEYS = {"file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "formatting",
              "columns", "tags"}


def is_dataset_info(data: Any) -> bool:
    """True for a dataset_info.json: an object whose values are all entries describing a dataset."""
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and _INFO_KEYS & set(v) for v in data.values())


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _read_json_array(text: str, source: str) -> Records:
    """A JSON list of rows, read element by element so that each row knows the line it starts on."""
    decoder = json.JSONDecoder()
    records = Records(source)
    at = _JSON_SPACE.match(text, _JSON_SPACE.match(text).end() + 1).end()
    line, counted = 1 + text.count("\n", 0, at), at
    if text.startswith("]", at):
        raise DataError("the list of rows is empty", where=source, hint="it needs at least one row")
    while True:
        line, counted = line + text.count("\n", counted, at), at
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            raise _json_error(exc, source) from None
        except RecursionError:
            raise DataError(f"row {len(records.rows) + len(records.problems)}: {TOO_DEEP}", where=f"{source}:{line}",
                            hint="rows are flat objects of text fields") from None
        if isinstance(value, dict):
            records.rows.append(Row(len(records.rows) + len(records.problems), line, value))
        else:
            records.problems.append(Problem(len(records.rows) + len(records.problems), line,
                                            f"row is a {type(value).__name__}, expected an object"))
        at = _JSON_SPACE.match(text, end).end()
        if text.startswith(",", at):
            at = _JSON_SPACE.match(text, at + 1).end()
            continue
        if text.startswith("]", at) and _JSON_SPACE.match(text, at + 1).end() == len(text):
            return records
        error = json.JSONDecodeError("expected ',' or ']' after a row" if not text.startswith("]", at)
                                     else "extra data after the list", text, at)
        raise _json_error(error, source)


def _json_error(exc: json.JSONDecodeError, source: str) -> DataError:
    return DataError(
        f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
        where=f"{source}:{exc.lineno}",
        hint="fix the JSON there; for one object per line, name the file .jsonl",
    )


def _read_jsonl(text: str, source: str) -> Records:
    records = Records(source)
    row = 0
    for number, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            records.problems.append(Problem(row, number, f"line longer than {MAX_LINE_BYTES >> 20} MiB, skipped"))
            row += 1
            continue
        try:
            value = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            records.problems.append(Problem(row, number, f"invalid JSON at column {exc.colno}: {exc.msg}"))
            row += 1
            continue
        except RecursionError:
            records.problems.append(Problem(row, number, TOO_DEEP))
            row += 1
            continue
        if isinstance(value, dict):
            records.rows.append(Row(row, number, value))
        else:
            records.problems.append(Problem(row, number, f"line holds a {type(value).__name__}, expected an object"))
        row += 1
    if not records.rows:
        first = records.problems[0] if records.problems else None
        raise DataError(
            f"no readable rows ({first.message})" if first else "no rows",
            where=f"{source}:{first.line}" if first else source,
            hint="each line must be one JSON object",
        )
    return records


def _read_csv(text: str, source: str) -> Records:
    reader = csv.DictReader(io.StringIO(text))
    records = Records(source)
    try:
        if not reader.fieldnames:
            raise DataError("CSV has no header row", where=f"{source}:1", hint="the first line must name the columns")
        for index, row in enumerate(reader):
            records.rows.append(Row(index, reader.line_num, {k: v for k, v in row.items() if k is not None}))
    except csv.Error as exc:  # e.g. a field over the csv module's size limit, or a NUL byte
        raise DataError(f"unreadable CSV: {exc}", where=f"{source}:{reader.line_num + 1}",  # the line it was on
                        hint="check the quoting there") from None
    if not records.rows:
        raise DataError("CSV has a header but no rows", where=source)
    return records


def _read_parquet(path: Path) -> Records:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for damaged files
        raise DataError(f"cannot read Parquet: {str(exc).splitlines()[0]}", where=str(path),
                        hint="check that the file is a complete Parquet file") from None
    if table.num_rows == 0:
        raise DataError("the Parquet file has no rows", where=str(path), hint="it needs at least one row")
    records = Records(str(path))
    records.rows = [Row(index, None, row) for index, row in enumerate(table.to_pylist())]
    return records
