"""Reading registry extracts: detect the format, encoding and separator, and yield rows.

Every reader yields Arrow record batches whose columns are the catalogue's column names as
strings, plus ``line_no`` (the line in the file: the CSV header is line 1; a JSON Lines file
counts from 1; a Parquet file numbers its rows from 1) and ``raw`` (the row's own text where
it is cheap to keep, otherwise null and looked up later by line number).

Well-formed CSV and JSON Lines files take a fast path through Arrow's C++ readers. Those lose
the line numbers of malformed rows, so when a file has any (a wrong number of fields, a blank
line, a quoted line break, a JSON line that is not an object of strings) the file is read again
on the exact path, which is slower but accounts for every line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from qamqor.kit.errors import InputFileError
from qamqor.registry.catalogue import Source, sources

BATCH_ROWS = 200_000
READ_BLOCK = 16 << 20
DELIMITERS = (";", ",", "\t", "|")


@dataclass
class FileInfo:
    path: Path
    size: int
    sha256: str
    format: str  # csv | jsonl | parquet
    encoding: str | None = None  # utf-8 | utf-8-sig | cp1251
    delimiter: str | None = None
    header: tuple[str, ...] = ()
    ends_with_newline: bool = True
    newlines: int = 0


@dataclass
class StructuralRejection:
    line_no: int
    reason: str
    raw: str


@dataclass
class ReadResult:
    """What a reader found besides rows: lines it could not split into the catalogue's fields."""

    structural: list[StructuralRejection] = field(default_factory=list)
    rows: int = 0


def inspect_file(path: Path) -> FileInfo:
    """Hash the file and tell its format and, for text, its encoding. Raises InputFileError."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the file ({exc.strerror})") from exc
    if size == 0:
        raise InputFileError(f"{path}: the file is empty")
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    utf8_ok = True
    newlines = 0
    last = b""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            handle.seek(0)
            is_parquet = head == b"PAR1"
            while block := handle.read(READ_BLOCK):
                digest.update(block)
                if not is_parquet:
                    newlines += block.count(b"\n")
                    if utf8_ok:
                        try:
                            utf8.decode(block)
                        except UnicodeDecodeError:
                            utf8_ok = False
                last = block[-1:]
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the file ({exc.strerror})") from exc
    info = FileInfo(path=path, size=size, sha256=digest.hexdigest(), format="csv")
    if is_parquet:
        info.format = "parquet"
        return info
    if utf8_ok:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False  # ends in the middle of a multi-byte character: truncated
    with path.open("rb") as handle:
        start = handle.read(65536)
    if b"\x00" in start:
        raise InputFileError(
            f"{path}: binary content (NUL bytes); expected CSV, JSON Lines or Parquet"
        )
    if start.startswith(codecs.BOM_UTF8):
        if not utf8_ok:
            raise InputFileError(f"{path}: starts with a UTF-8 BOM but is not valid UTF-8")
        info.encoding = "utf-8-sig"
    elif utf8_ok:
        info.encoding = "utf-8"
    else:
        info.encoding = "cp1251"
        try:
            with path.open("rb") as handle:
                cp = codecs.getincrementaldecoder("cp1251")("strict")
                while block := handle.read(READ_BLOCK):
                    cp.decode(block)
        except UnicodeDecodeError as exc:
            raise InputFileError(
                f"{path}: neither UTF-8 nor CP1251 (byte 0x{exc.object[exc.start]:02x})"
            ) from exc
    info.ends_with_newline = last == b"\n"
    info.newlines = newlines
    first_char = start.decode(info.encoding, errors="replace").lstrip("\ufeff \r\n\t")[:1]
    if first_char == "{" or path.suffix.lower() in (".jsonl", ".ndjson"):
        info.format = "jsonl"
    return info


def read_header(info: FileInfo) -> tuple[str, ...]:
    """The CSV header's field names, with the separator detected among ; , tab |."""
    with info.path.open("r", encoding=info.encoding, newline="\n") as handle:
        line = handle.readline()
    line = line.rstrip("\r\n")
    if not line.strip():
        raise InputFileError(f"{info.path}: the first line is empty; expected a header")
    counts = {d: line.count(d) for d in DELIMITERS}
    delimiter = max(counts, key=lambda d: counts[d])
    if counts[delimiter] == 0:
        raise InputFileError(
            f"{info.path}: cannot find a separator (; , tab or |) in the header line"
        )
    info.delimiter = delimiter
    header = next(csv.reader([line], delimiter=delimiter))
    info.header = tuple(name.strip() for name in header)
    return info.header


def parquet_columns(info: FileInfo) -> tuple[str, ...]:
    try:
        schema = pq.read_schema(info.path)
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(f"{info.path}: not a readable Parquet file ({exc})") from exc
    info.header = tuple(schema.names)
    return info.header


def jsonl_columns(info: FileInfo) -> tuple[str, ...]:
    with info.path.open("r", encoding=info.encoding) as handle:
        for line in handle:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputFileError(
                        f"{info.path}: the first line is not JSON ({exc.msg})"
                    ) from exc
                if not isinstance(obj, dict):
                    raise InputFileError(f"{info.path}: JSON Lines rows must be objects")
                info.header = tuple(obj)
                return info.header
    raise InputFileError(f"{info.path}: the file has no rows")


def file_columns(info: FileInfo) -> tuple[str, ...]:
    if info.format == "parquet":
        return parquet_columns(info)
    if info.format == "jsonl":
        return jsonl_columns(info)
    return read_header(info)


def match_source(info: FileInfo, columns: tuple[str, ...], source: str | None) -> Source:
    """The source registry this file belongs to: the file's columns must be its schema.

    Optional columns may be left out (they read as empty): a registry's extracts made before
    an optional column joined the catalogue (the disability register's ``diagnosis``) still
    load, and JSON Lines rows may leave out optional keys. Every required column must be there,
    and no column the schema does not know.
    """
    catalogue = sources()
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise InputFileError(f"{info.path}: repeated column names: {', '.join(dupes)}")

    def problems(candidate: Source) -> str | None:
        expected = set(candidate.column_names)
        got = set(columns)
        missing = {c for c in expected - got if candidate.column(c).required}
        unexpected = got - expected
        if not missing and not unexpected:
            return None
        parts = []
        if missing:
            parts.append("missing " + ", ".join(sorted(missing)))
        if unexpected:
            parts.append("unexpected " + ", ".join(sorted(unexpected)))
            # a misspelt optional column shows up as one unexpected and one left out
            left_out = expected - got - missing
            if left_out:
                parts.append("optional columns not given: " + ", ".join(sorted(left_out)))
        return "; ".join(parts)

    if source is not None:
        if source not in catalogue:
            raise InputFileError(
                f"unknown source registry {source!r}; known: {', '.join(sorted(catalogue))}"
            )
        problem = problems(catalogue[source])
        if problem:
            raise InputFileError(
                f"{info.path}: columns do not match the {source} registry's schema ({problem})"
            )
        return catalogue[source]
    fits = [s for s in catalogue.values() if problems(s) is None]
    if len(fits) == 1:
        return fits[0]
    closest = max(catalogue.values(), key=lambda s: len(set(s.column_names) & set(columns)))
    hint = ""
    if set(closest.column_names) & set(columns) - {"record_id", "iin", "updated_on"}:
        hint = f"; closest is {closest.code}: {problems(closest)}"
    raise InputFileError(
        f"{info.path}: cannot tell which registry sent this file from its columns "
        f"({', '.join(columns[:12])}){hint}; pass --source or ingest through a manifest"
    )


# --- readers ------------------------------------------------------------------------------


def _string_table(
    columns: dict[str, pa.Array], names: tuple[str, ...], lines: pa.Array
) -> pa.RecordBatch:
    arrays = [
        columns[name] if name in columns else pa.nulls(len(lines), pa.string()) for name in names
    ]
    arrays.append(lines)
    arrays.append(pa.nulls(len(lines), pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=[*names, "line_no", "raw"])


def _as_strings(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_large_string(array.type):
        return array.cast(pa.string())
    if pa.types.is_dictionary(array.type):
        return _as_strings(array.dictionary_decode())
    if pa.types.is_timestamp(array.type):
        return array.cast(pa.date32()).cast(pa.string())
    return array.cast(pa.string())


class ExactPathNeeded(Exception):
    """The fast reader met something it cannot account for line by line."""


RESTART = None
"""Yielded by ``read_rows`` when the fast path gave up: drop every batch received so far."""


def read_rows(
    info: FileInfo, source: Source, result: ReadResult
) -> Iterator[pa.RecordBatch | None]:
    if info.format == "parquet":
        yield from _read_parquet(info, source, result)
        return
    fast, exact = (_fast_jsonl, _exact_jsonl) if info.format == "jsonl" else (_fast_csv, _exact_csv)
    try:
        yield from fast(info, source, result)
    except ExactPathNeeded:
        result.rows = 0
        result.structural.clear()
        yield RESTART
        yield from exact(info, source, result)


def _read_parquet(info: FileInfo, source: Source, result: ReadResult) -> Iterator[pa.RecordBatch]:
    try:
        parquet = pq.ParquetFile(info.path)
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            n = batch.num_rows
            lines = pa.array(range(result.rows + 1, result.rows + n + 1), pa.int64())
            columns = {name: _as_strings(batch.column(name)) for name in batch.schema.names}
            result.rows += n
            yield _string_table(columns, source.column_names, lines)
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(f"{info.path}: the Parquet file cannot be read ({exc})") from exc


def _fast_csv(info: FileInfo, source: Source, result: ReadResult) -> Iterator[pa.RecordBatch]:
    """Arrow's CSV reader; valid only while every physical line is exactly one row."""
    if not info.ends_with_newline:
        raise ExactPathNeeded
    broken: list[object] = []

    def on_invalid(row: object) -> str:
        broken.append(row)
        return "skip"

    header = info.header
    try:
        reader = pacsv.open_csv(
            info.path,
            read_options=pacsv.ReadOptions(
                encoding="utf8" if info.encoding in ("utf-8", "utf-8-sig") else info.encoding,
                block_size=READ_BLOCK,
                column_names=list(header),
                skip_rows=1,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=info.delimiter,
                newlines_in_values=False,
                ignore_empty_lines=True,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        batches = []
        for batch in reader:
            if broken:
                raise ExactPathNeeded
            batches.append(batch)
            if sum(b.num_rows for b in batches) >= BATCH_ROWS:
                yield from _emit_csv(batches, info, source, result)
                batches = []
        if broken:
            raise ExactPathNeeded
        yield from _emit_csv(batches, info, source, result)
    except pa.ArrowInvalid as exc:
        raise ExactPathNeeded from exc
    # Every line after the header must have been one row; blank lines were skipped silently.
    if result.rows != info.newlines - 1:
        raise ExactPathNeeded


def _emit_csv(
    batches: list[pa.RecordBatch], info: FileInfo, source: Source, result: ReadResult
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        lines = pa.array(range(result.rows + 2, result.rows + n + 2), pa.int64())
        columns = {name: batch.column(name) for name in info.header}
        result.rows += n
        yield _string_table(columns, source.column_names, lines)


def _exact_csv(info: FileInfo, source: Source, result: ReadResult) -> Iterator[pa.RecordBatch]:
    """Python's csv module, one row at a time: exact line numbers and raw text for every row."""
    header = info.header
    width = len(header)
    pending: list[str] = []

    def lines_of(handle: io.TextIOBase) -> Iterator[str]:
        for line in handle:
            pending.append(line)
            yield line

    buffer: dict[str, list[str | None]] = {name: [] for name in header}
    line_numbers: list[int] = []
    raws: list[str] = []
    with info.path.open("r", encoding=info.encoding, newline="\n") as handle:
        handle.readline()
        reader = csv.reader(lines_of(handle), delimiter=info.delimiter or ",", strict=True)
        last_line = 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error:
                raw = "".join(pending)
                pending.clear()
                line_no = last_line + 1
                last_line = line_no + raw.count("\n") - (1 if raw.endswith("\n") else 0)
                result.rows += 1
                if not raw.endswith("\n"):  # an open quote ran into the end of the file
                    _truncated(info)
                result.structural.append(StructuralRejection(line_no, "malformed_csv", raw))
                reader = csv.reader(lines_of(handle), delimiter=info.delimiter or ",", strict=True)
                continue
            raw = "".join(pending)
            pending.clear()
            # Lines are counted by LF only, as the fast path and inspect_file count them: a
            # lone CR is a character of the row, not a line break.
            line_no = last_line + 1
            last_line = line_no + raw.count("\n") - (1 if raw.endswith("\n") else 0)
            result.rows += 1
            if len(fields) != width:
                if not raw.endswith("\n") and len(fields) < width:
                    _truncated(info)
                reason = "empty_line" if not raw.strip() else "wrong_field_count"
                result.structural.append(StructuralRejection(line_no, reason, raw))
                continue
            for name, value in zip(header, fields, strict=True):
                buffer[name].append(value)
            line_numbers.append(line_no)
            raws.append(raw.rstrip("\r\n"))
            if len(line_numbers) >= BATCH_ROWS:
                yield _exact_batch(buffer, line_numbers, raws, source)
                buffer = {name: [] for name in header}
                line_numbers, raws = [], []
    if line_numbers:
        yield _exact_batch(buffer, line_numbers, raws, source)


def _truncated(info: FileInfo) -> None:
    raise InputFileError(
        f"{info.path}: the last row ends before its last field and the file has no final "
        "line break: the file looks truncated; nothing was stored"
    )


def _exact_batch(
    buffer: dict[str, list[str | None]], line_numbers: list[int], raws: list[str], source: Source
) -> pa.RecordBatch:
    columns = {name: pa.array(values, pa.string()) for name, values in buffer.items()}
    batch = _string_table(columns, source.column_names, pa.array(line_numbers, pa.int64()))
    return batch.set_column(batch.num_columns - 1, "raw", pa.array(raws, pa.string()))


def _fast_jsonl(info: FileInfo, source: Source, result: ReadResult) -> Iterator[pa.RecordBatch]:
    if not info.ends_with_newline:
        raise ExactPathNeeded
    schema = pa.schema([(name, pa.string()) for name in source.column_names])
    try:
        reader = pajson.open_json(
            info.path,
            read_options=pajson.ReadOptions(block_size=READ_BLOCK),
            parse_options=pajson.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="error", newlines_in_values=False
            ),
        )
        for batch in reader:
            n = batch.num_rows
            lines = pa.array(range(result.rows + 1, result.rows + n + 1), pa.int64())
            columns = {name: batch.column(name) for name in source.column_names}
            result.rows += n
            yield _string_table(columns, source.column_names, lines)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise ExactPathNeeded from exc
    if result.rows != info.newlines:
        raise ExactPathNeeded


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


def _exact_jsonl(info: FileInfo, source: Source, result: ReadResult) -> Iterator[pa.RecordBatch]:
    names = source.column_names
    known = set(names)
    buffer: dict[str, list[str | None]] = {name: [] for name in names}
    line_numbers: list[int] = []
    raws: list[str] = []
    with info.path.open("r", encoding=info.encoding, newline="\n") as handle:
        for line_no, line in enumerate(handle, start=1):
            result.rows += 1
            text = line.rstrip("\r\n")
            if not text.strip():
                result.structural.append(StructuralRejection(line_no, "empty_line", line))
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                if not line.endswith("\n"):
                    raise InputFileError(
                        f"{info.path}: the last line is cut off in the middle of a JSON object "
                        "and has no final line break: the file looks truncated; nothing was stored"
                    ) from None
                result.structural.append(StructuralRejection(line_no, "malformed_json", line))
                continue
            if not isinstance(obj, dict):
                result.structural.append(StructuralRejection(line_no, "not_an_object", line))
                continue
            if set(obj) - known:
                result.structural.append(StructuralRejection(line_no, "unexpected_field", line))
                continue
            for name in names:
                buffer[name].append(_json_text(obj.get(name)))
            line_numbers.append(line_no)
            raws.append(text)
            if len(line_numbers) >= BATCH_ROWS:
                yield _exact_batch(buffer, line_numbers, raws, source)
                buffer = {name: [] for name in names}
                line_numbers, raws = [], []
    if line_numbers:
        yield _exact_batch(buffer, line_numbers, raws, source)


class LineLookup:
    """The text of physical lines (1-based), asked for in increasing order, in one pass.

    Rejections are fetched in chunks; reopening the file for each chunk would read its head
    again every time.
    """

    def __init__(self, info: FileInfo) -> None:
        self._handle = info.path.open("r", encoding=info.encoding, newline="\n")
        self._lines = enumerate(self._handle, start=1)

    def fetch(self, numbers: set[int]) -> dict[int, str]:
        """The text of ``numbers``; each call must ask for lines after the previous call's."""
        found: dict[int, str] = {}
        if not numbers:
            return found
        last = max(numbers)
        for line_no, line in self._lines:
            if line_no in numbers:
                found[line_no] = line.rstrip("\r\n")
            if line_no >= last:
                break
        return found

    def close(self) -> None:
        self._handle.close()
