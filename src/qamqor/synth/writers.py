"""Extract files in the shapes registries send: CSV (UTF-8, UTF-8 with BOM, CP1251), JSON Lines
and Parquet, appended chunk by chunk so memory does not grow with the population.

Empty values: nothing between the separators in CSV, ``null`` in JSON Lines, null in Parquet.
CSV is quoted only where a value needs it (RFC 4180); the header is never quoted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from qamqor.registry.catalogue import Source
from qamqor.synth.population import NO_DATE

FORMATS = ("csv", "jsonl", "parquet")
ENCODINGS = ("utf-8", "utf-8-sig", "cp1251")
DATE_STYLES = ("iso", "dmy")
RECORD_PREFIX = {
    "population": "POP",
    "household": "HHM",
    "income": "INC",
    "employment": "EMP",
    "property": "PRP",
    "disability": "DIS",
    "finance": "FIN",
}


@dataclass(frozen=True)
class FormatSpec:
    """How one extract is written. ``encoding`` and ``delimiter`` apply to CSV only."""

    format: str = "csv"
    encoding: str | None = "utf-8"
    delimiter: str | None = ","
    dates: str = "iso"  # iso = YYYY-MM-DD, dmy = DD.MM.YYYY

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        if self.format == "csv":
            if self.encoding not in ENCODINGS:
                raise ValueError(f"unknown encoding {self.encoding!r}; use {', '.join(ENCODINGS)}")
            if not self.delimiter or len(self.delimiter) != 1:
                raise ValueError("a CSV delimiter is one character")
        if self.dates not in DATE_STYLES:
            raise ValueError(f"unknown date style {self.dates!r}; use iso or dmy")

    @property
    def extension(self) -> str:
        return self.format

    def manifest(self) -> dict[str, str | None]:
        if self.format == "csv":
            return {"format": "csv", "encoding": self.encoding, "delimiter": self.delimiter}
        return {"format": self.format, "encoding": "utf-8" if self.format == "jsonl" else None,
                "delimiter": None}  # fmt: skip


DEFAULT_FORMATS: dict[str, FormatSpec] = {
    "population": FormatSpec("csv", "utf-8-sig", ";", "dmy"),
    "household": FormatSpec("csv", "cp1251", ";"),
    "income": FormatSpec("parquet", None, None),
    "employment": FormatSpec("csv", "utf-8", ","),
    "property": FormatSpec("jsonl", None, None),
    "disability": FormatSpec("csv", "cp1251", ";"),
    "finance": FormatSpec("csv", "utf-8", ","),
}


def parse_format_override(text: str) -> tuple[str, FormatSpec]:
    """``source=format[:encoding[:delimiter[:dates]]]``, e.g. ``income=csv:utf-8:;`` or
    ``property=parquet``; ``tab`` names the tab delimiter."""
    source, sep, rest = text.partition("=")
    if not sep or not rest:
        raise ValueError(f"expected SOURCE=FORMAT[:ENCODING[:DELIMITER[:DATES]]], got {text!r}")
    parts = rest.split(":")
    fmt = parts[0].strip().lower()
    if fmt != "csv":
        dates = parts[1] if len(parts) > 1 and parts[1] in DATE_STYLES else "iso"
        return source.strip(), FormatSpec(fmt, None, None, dates)
    encoding = parts[1].lower() if len(parts) > 1 and parts[1] else "utf-8"
    delimiter = parts[2] if len(parts) > 2 and parts[2] else ","
    delimiter = "\t" if delimiter == "tab" else delimiter
    dates = parts[3] if len(parts) > 3 and parts[3] else "iso"
    return source.strip(), FormatSpec("csv", encoding, delimiter, dates)


# --- values ---------------------------------------------------------------------------------


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pa.array(values).cast(pa.string()), width, "0")


def id_strings(values: np.ndarray, width: int = 12) -> pa.Array:
    mask = values < 0
    return pc.utf8_lpad(pa.array(values, mask=mask).cast(pa.string()), width, "0")


def record_ids(source: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(RECORD_PREFIX[source], _digits(numbers, 10), "-")


def date_array(days: np.ndarray) -> pa.Array:
    mask = days == NO_DATE
    return pa.array(np.where(mask, 0, days).astype(np.int32), type=pa.date32(), mask=mask)


def date_strings(days: np.ndarray, style: str) -> pa.Array:
    dates = date_array(days)
    if style == "iso":
        return dates.cast(pa.string())
    return pc.strftime(dates.cast(pa.timestamp("s")), "%d.%m.%Y")


def month_strings(months: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        pa.array(months // 12 + 1970).cast(pa.string()), _digits(months % 12 + 1, 2), "-"
    )


def money_strings(hundredths: np.ndarray) -> pa.Array:
    mask = hundredths < 0
    whole = pa.array(hundredths // 100, mask=mask).cast(pa.string())
    return pc.binary_join_element_wise(whole, _digits(hundredths % 100, 2), ".")


def extract_table(
    source: Source, columns: dict[str, np.ndarray | pa.Array], spec: FormatSpec
) -> pa.Table:
    """The catalogue's columns, in order: strings, or typed dates and money for Parquet."""
    arrays = []
    typed = spec.format == "parquet"
    for column in source.columns:
        value = columns[column.name]
        if isinstance(value, pa.Array):
            arrays.append(value)
        elif column.type in ("iin", "bin"):
            arrays.append(id_strings(value))
        elif column.type == "date":
            arrays.append(date_array(value) if typed else date_strings(value, spec.dates))
        elif column.type == "month":
            arrays.append(month_strings(value))
        elif column.type in ("money", "decimal"):
            text = money_strings(value)
            arrays.append(text.cast(pa.decimal128(18, 2)) if typed else text)
        else:
            raise TypeError(f"{source.code}.{column.name}: no formatter for {column.type}")
    return pa.Table.from_arrays(arrays, names=list(source.column_names))


# --- files ----------------------------------------------------------------------------------


def _jsonl_bytes(table: pa.Table) -> bytes:
    pieces: list[pa.Array | str] = []
    for i, name in enumerate(table.column_names):
        col = table.column(name).combine_chunks().cast(pa.string())
        col = pc.replace_substring(pc.replace_substring(col, "\\", "\\\\"), '"', '\\"')
        quoted = pc.binary_join_element_wise('"', col, '"', "")
        pieces.append(("{" if i == 0 else ",") + f'"{name}":')
        pieces.append(pc.if_else(pc.is_null(col), "null", quoted))
    pieces.append("}\n")
    lines = pc.binary_join_element_wise(*pieces, "")
    offsets, data = lines.buffers()[1], lines.buffers()[2]
    start, end = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    return data.to_pybytes()[start:end] if data is not None else b""


class ExtractWriter:
    """Appends one source's rows to its file, chunk after chunk."""

    def __init__(self, path: Path, source: Source, spec: FormatSpec) -> None:
        self.path = path
        self.source = source
        self.spec = spec
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._handle: BinaryIO | None = None
        if spec.format != "parquet":
            self._handle = path.open("wb")
            if spec.format == "csv":
                header = (spec.delimiter or ",").join(source.column_names) + "\n"
                if spec.encoding == "utf-8-sig":
                    self._handle.write(b"\xef\xbb\xbf")
                self._handle.write(self._encode(header.encode("utf-8")))

    def _encode(self, utf8: bytes) -> bytes:
        if self.spec.encoding == "cp1251":
            return utf8.decode("utf-8").encode("cp1251")
        return utf8

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.spec.format == "parquet":
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._parquet.write_table(table)
            return
        assert self._handle is not None
        if self.spec.format == "jsonl":
            self._handle.write(_jsonl_bytes(table))
            return
        # Arrow's "needed" style quotes every string; "none" quotes nothing and refuses a value
        # that would need quotes, so try it first and quote the chunk only when it must be.
        for quoting in ("none", "needed"):
            sink = pa.BufferOutputStream()
            options = pacsv.WriteOptions(
                include_header=False,
                delimiter=self.spec.delimiter or ",",
                quoting_style=quoting,
                batch_size=65536,
            )
            try:
                pacsv.write_csv(table, sink, options)
                break
            except pa.ArrowInvalid:
                continue
        self._handle.write(self._encode(sink.getvalue().to_pybytes()))

    def close(self, empty_schema: pa.Schema | None = None) -> None:
        if self._handle is not None:
            self._handle.close()
        if self.spec.format == "parquet":
            if self._parquet is None and empty_schema is not None:
                self._parquet = pq.ParquetWriter(self.path, empty_schema, compression="zstd")
            if self._parquet is not None:
                self._parquet.close()


class TruthWriter:
    """A Parquet file of ground truth, one row group per chunk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
