"""Local data files of the generic loaders: resolving patterns, explaining why a file did not load, locating rows.

`datasets` wraps whatever went wrong while reading a file in a DatasetGenerationError and logs the
file's name instead of keeping it. So when a load fails, the exception chain says what kind of
problem it was (bad bytes, an empty file, a ragged row, bad JSON), and the files themselves are
read again here to say which file, which line, and what would fix it.
"""

from __future__ import annotations

import bz2
import csv
import glob
import gzip
import io
import json
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtkit import MtkitError

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".lzma": lzma.open}
_DELIMITERS = {"\t": "tab", ";": "semicolon", "|": "pipe", ",": "comma"}
_GLOB = "*?["


def resolve(patterns: list[str]) -> list[Path]:
    """Each pattern's files (a glob's matches sorted by name), in the order the patterns are given."""
    out: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if any(ch in pattern for ch in _GLOB):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not matches:
                raise MtkitError(
                    f"data_files: pattern {pattern!r} matches no file (relative paths start at the working directory "
                    f"{Path.cwd()}); check the folder and the file extension"
                )
            out += matches
        elif path.is_dir():
            raise MtkitError(f"data_files: {pattern!r} is a directory; name its files, e.g. {str(path / '*.csv')!r}")
        elif not path.is_file():
            raise MtkitError(f"data_files: {pattern!r} is not a file; check the path (relative paths start at the working directory)")
        else:
            out.append(path)
    return out


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when its suffix names a compression `datasets` reads too."""
    opener = _OPENERS.get(path.suffix.lower())
    if opener is None:
        return path.read_bytes()
    with opener(path, "rb") as f:
        data: bytes = f.read()
        return data


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode(path: Path, encoding: str) -> str:
    """The file's text; bytes that are not `encoding` raise an MtkitError naming the line and byte offset."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig" if encoding.replace("_", "-").lower() in {"utf-8", "utf8"} else encoding)
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        hint = "utf-16" if b"\x00" in data[:200] else "latin-1"
        raise MtkitError(
            f"{path}: line {_line_of(data, exc.start)} is not {encoding} text (byte 0x{byte:02x} at byte offset {exc.start}); "
            f"set the dataset's encoding to the file's (e.g. encoding = {hint!r}) or save the file as UTF-8"
        ) from None


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def innermost(exc: BaseException) -> str:
    """The deepest cause as `Type: first line`, for a message when no file could be blamed."""
    last = causes(exc)[-1]
    lines = str(last).strip().splitlines()
    return f"{type(last).__name__}: {lines[0][:200] if lines else ''}"


def _is(exc: BaseException, name: str) -> bool:
    """Whether `exc` is an instance of a class called `name` (pandas' and pyarrow's errors, without importing them)."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


# --- explaining a failed load -------------------------------------------------------------------


def explain(exc: BaseException, builder: str, files: list[Path], options: dict[str, Any]) -> str:
    """One message saying which file failed to load, where in it, and what would fix it."""
    chain = causes(exc)
    encoding = options.get("encoding") or "utf-8"
    try:
        if builder in ("csv", "json"):
            for path in files:  # bytes first: every other check reads text
                _decode(path, encoding)
        if builder == "csv":
            problem = _csv_problem(files, options.get("delimiter") or ",", encoding, chain)
        elif builder == "json":
            problem = _json_problem(files, options.get("field"), encoding)
        else:
            problem = _parquet_problem(files)
    except MtkitError as found:
        return str(found)
    except OSError as error:  # the file vanished or cannot be read while we look
        return f"data_files: cannot read {error.filename} ({error.strerror})"
    names = ", ".join(str(p) for p in files)
    return problem or f"data_files {names}: could not be read as {builder} ({innermost(exc)})"


def _csv_problem(files: list[Path], delimiter: str, encoding: str, chain: list[BaseException]) -> str | None:
    empty = any(_is(e, "EmptyDataError") for e in chain)
    for path in files:
        text = _decode(path, encoding)
        if not text.strip():
            return f"{path}: is empty (no header row); write a header line and rows, or remove the file from data_files"
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        header = next(reader)
        widths = [(reader.line_num, len(record)) for record in reader if record]
        # pandas refuses a row longer than the header (a short one it fills with nulls): name a long one first.
        bad = next((w for w in widths if w[1] > len(header)), None) or next((w for w in widths if w[1] < len(header)), None)
        if bad is not None:
            return (
                f"{path}: line {bad[0]} has {bad[1]} {_DELIMITERS.get(delimiter, repr(delimiter))}-separated "
                f"fields but the header has {len(header)}; quote values that contain {delimiter!r} or fix the row"
                + _delimiter_hint(text.splitlines()[0], delimiter)
            )
    if empty:
        return f"data_files {', '.join(map(str, files))}: a file holds no rows; remove it from data_files"
    return None


def _other_delimiter(header: str, delimiter: str) -> str | None:
    """A delimiter that splits `header` more often than the configured one does."""
    return next((d for d in _DELIMITERS if d != delimiter and header.count(d) > header.count(delimiter)), None)


def _delimiter_hint(header: str, delimiter: str) -> str:
    other = _other_delimiter(header, delimiter)
    return f" (the header looks {_DELIMITERS[other]}-separated: set delimiter = {other!r})" if other else ""


def check_csv_columns(files: list[Path], columns: list[str], delimiter: str, encoding: str) -> None:
    """Catch a file that loaded but was split on the wrong character, or is not CSV at all.

    A TSV read with the comma default loads without error as one column named after the whole
    header (or with a pandas index column when every row has one comma more than the header).
    """
    suspicious = len(columns) == 1 or "__index_level_0__" in columns or columns[0].lstrip().startswith(("{", "["))
    if not suspicious:
        return
    for path in files:
        lines = _decode(path, encoding).splitlines()
        header = lines[0] if lines else ""
        if header.lstrip().startswith(("{", "[")):
            raise MtkitError(f"{path}: looks like JSON, not CSV (line 1 starts {header[:30]!r}); use the dataset type \"json\"")
        other = _other_delimiter(header, delimiter)
        if other is not None:
            raise MtkitError(
                f"{path}: the header line {header[:60]!r} is {_DELIMITERS[other]}-separated, not "
                f"{_DELIMITERS.get(delimiter, repr(delimiter))}-separated; set the dataset's delimiter = {other!r}"
            )
    if "__index_level_0__" in columns:  # pandas made the extra field of a long row an index, shifting the row
        problem = _csv_problem(files, delimiter, encoding, [])
        if problem:
            raise MtkitError(problem)


def check_json_files(files: list[Path], loaded_rows: int, field: str | None, encoding: str) -> None:
    """Catch what the json builder loads without a word: bytes that are not UTF-8 (pyarrow keeps them, and a
    later read of the text fails), and a JSON object file read without `field` (one row holding the records)."""
    if encoding.replace("_", "-").lower() in {"utf-8", "utf8"}:
        for path in files:
            _decode(path, encoding)
    if field is None and loaded_rows <= len(files):
        problem = _json_problem(files, field, encoding)
        if problem:
            raise MtkitError(problem)


def _json_problem(files: list[Path], field: str | None, encoding: str) -> str | None:
    for path in files:
        text = _decode(path, encoding)
        if not text.strip():
            return f"{path}: is empty; write one JSON object per line, or remove the file from data_files"
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            problem = _json_lines_problem(path, text, field)
        else:
            problem = _json_document_problem(path, document, field)
        if problem:
            return problem
    return None


def _json_document_problem(path: Path, document: Any, field: str | None) -> str | None:
    if isinstance(document, dict):
        keys = ", ".join(map(repr, sorted(document)[:8])) or "none"
        if field is None:
            if all(not isinstance(v, list) for v in document.values()):
                return None  # a single record: datasets reads it as one row
            return f"{path}: holds one JSON object (keys: {keys}); set the dataset's field to the key that holds the list of records"
        if field not in document:
            return f"{path}: has no key {field!r} (keys: {keys}); set the dataset's field to the key that holds the records"
        document = document[field]
        if not isinstance(document, list):
            return f"{path}: key {field!r} holds a {type(document).__name__}, not a list of records"
    elif field is not None:
        return f"{path}: holds a JSON {type(document).__name__}, which has no key {field!r}; remove the dataset's field"
    if isinstance(document, list):
        bad = next((i for i, record in enumerate(document) if not isinstance(record, dict)), None)
        if bad is not None:
            return f"{path}: record {bad} is a {type(document[bad]).__name__}, not an object with named fields"
    return None


def _json_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _json_lines_problem(path: Path, text: str, field: str | None) -> str | None:
    types: dict[str, tuple[str, int]] = {}  # field -> (JSON type, first line holding it)
    first = True
    for number, line in _json_lines(text):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if first and not line.lstrip().startswith(("{", "[")):
                return f"{path}: is not JSON (line 1 starts {line[:30]!r}); use the dataset type \"csv\" for a CSV file"
            return f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno}); fix that line (JSON Lines hold one object per line)"
        first = False
        if not isinstance(record, dict):
            return f"{path}: line {number} holds a JSON {type(record).__name__}, not an object with named fields"
        for key, value in record.items():
            kind = _json_type(value)
            if kind == "null":
                continue
            seen = types.setdefault(key, (kind, number))
            if seen[0] != kind:
                return (
                    f"{path}: line {number}: field {key!r} is a {kind} where line {seen[1]} has a {seen[0]}; "
                    f"give the field one type in every record (e.g. write the value as a {seen[0]})"
                )
    if field is not None:
        return f"{path}: is JSON Lines (one record per line), which has no key {field!r}; remove the dataset's field"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _parquet_problem(files: list[Path]) -> str | None:
    import pyarrow.parquet as pq

    for path in files:
        try:
            pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001  pyarrow raises several types for a damaged file; all mean "not Parquet"
            guess = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}.get(path.suffix.lower())
            fix = f"use the dataset type {guess!r}" if guess else "check that the file is Parquet and complete"
            return f"{path}: is not a readable Parquet file ({type(exc).__name__}: {str(exc)[:120]}); {fix}"
    return None


# --- locating a row in its file -----------------------------------------------------------------


def locate(builder: str, files: list[Path], row: int, options: dict[str, Any]) -> str | None:
    """Where data row `row` (0-based, counted across `files` in order) sits: `file line N`, or None if unknown."""
    try:
        for path in files:
            where, row = _locate_in(builder, path, row, options)
            if where is not None:
                return where
    except Exception:  # noqa: BLE001  a best-effort pointer: never let locating a row hide the problem being reported
        return None
    return None


def _locate_in(builder: str, path: Path, row: int, options: dict[str, Any]) -> tuple[str | None, int]:
    """(`path line N` if row `row` is in this file, rows left to skip otherwise)."""
    if builder == "parquet":
        import pyarrow.parquet as pq

        count = pq.ParquetFile(path).metadata.num_rows
        return (f"{path} row {row}", row) if row < count else (None, row - count)
    text = _decode(path, options.get("encoding") or "utf-8")
    if builder == "csv":
        reader = csv.reader(io.StringIO(text), delimiter=options.get("delimiter") or ",")
        next(reader, None)
        start = reader.line_num + 1
        for record in reader:
            if record:  # pandas skips blank lines
                if row == 0:
                    return f"{path} line {start}", 0
                row -= 1
            start = reader.line_num + 1
        return None, row
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        for number, _ in _json_lines(text):
            if row == 0:
                return f"{path} line {number}", 0
            row -= 1
        return None, row
    records = document.get(options.get("field") or "", []) if isinstance(document, dict) else document
    count = len(records) if isinstance(records, list) else 1
    return (f"{path} record {row}", row) if row < count else (None, row - count)
