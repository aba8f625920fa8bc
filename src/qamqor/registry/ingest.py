"""Ingest of registry extracts: every row becomes a fact with provenance or a rejection.

The whole file is read and checked in a DuckDB staging engine first (bounded memory: DuckDB
spills to ``var/staging``), and only then written to the database in one transaction, so a file
that turns out to be unusable changes nothing and a crash never leaves half a batch. The report
reconciles: rows read = facts + rejections + exact duplicates skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from qamqor.kit.db import get_engine
from qamqor.kit.errors import InputFileError, QamqorError
from qamqor.kit.settings import get_settings
from qamqor.privacy import fields
from qamqor.registry import reading
from qamqor.registry.catalogue import Source
from qamqor.registry.loading import bulk_insert
from qamqor.registry.models import FACT_TABLES, RAW_SEALED, Batch, Rejection
from qamqor.registry.validation import fact_column, validation_sql

MANIFEST = "manifest.json"
WRITE_BATCH_ROWS = 100_000


@dataclass
class BatchReport:
    """What happened to one file. ``status`` is ``loaded`` or ``already_ingested``."""

    file: str
    status: str
    source: str
    batch_id: int
    sha256: str
    format: str
    encoding: str | None
    delimiter: str | None
    rows_read: int
    facts: int
    rejections: int
    duplicates: int
    seconds: float
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent reading, checking, writing facts and rebuilding indexes."""

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.facts + self.rejections + self.duplicates

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"reconciles": self.reconciles}


@dataclass
class ManifestEntry:
    source: str
    path: Path
    sha256: str | None
    rows: int | None


def read_manifest(directory: Path) -> list[ManifestEntry]:
    """The files a manifest lists, in its order. Raises InputFileError on a broken manifest."""
    manifest_path = directory / MANIFEST
    try:
        data = json.loads(manifest_path.read_text("utf-8"))
        entries = [
            ManifestEntry(
                source=str(item["source"]),
                path=directory / str(item["path"]),
                sha256=item.get("sha256"),
                rows=item.get("rows"),
            )
            for item in data["files"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{manifest_path}: not a readable manifest ({exc})") from exc
    return entries


def expand_paths(paths: list[Path]) -> list[tuple[Path, str | None, ManifestEntry | None]]:
    """Files to ingest: a directory with a manifest contributes the files it lists."""
    result: list[tuple[Path, str | None, ManifestEntry | None]] = []
    for path in paths:
        if path.is_dir():
            if not (path / MANIFEST).exists():
                raise InputFileError(f"{path}: a directory needs a {MANIFEST} listing its files")
            result.extend((e.path, e.source, e) for e in read_manifest(path))
        else:
            result.append((path, None, None))
    return result


def _existing_batch(engine: Engine, sha256: str) -> Batch | None:
    with engine.connect() as conn:
        row = conn.execute(select(Batch).where(Batch.file_sha256 == sha256)).first()
    return None if row is None else Batch(**row._mapping)


def _already(info: reading.FileInfo, batch: Batch, started: float) -> BatchReport:
    return BatchReport(
        file=str(info.path),
        status="already_ingested",
        source=batch.source,
        batch_id=batch.id,
        sha256=info.sha256,
        format=batch.format,
        encoding=batch.encoding,
        delimiter=batch.delimiter,
        rows_read=batch.rows_read,
        facts=batch.facts,
        rejections=batch.rejections,
        duplicates=batch.duplicates,
        seconds=round(time.monotonic() - started, 3),
    )


@dataclass
class PreparedFile:
    """A file read and checked in its DuckDB staging engine; nothing written to the database yet.

    ``write`` stores it and releases the staging engine; ``discard`` only releases it.
    """

    info: reading.FileInfo
    src: Source
    read: reading.ReadResult
    con: duckdb.DuckDBPyConnection
    spill: Path
    started: float
    received_at: dt.datetime
    facts: int
    duplicates: int
    rejections: int
    reasons: dict[str, int]
    phases: dict[str, float]

    def discard(self) -> None:
        _release(self.con, self.spill)

    def write(
        self, engine: Engine | None = None, progress: Callable[[str, int], None] | None = None
    ) -> BatchReport:
        try:
            report = _write(self, engine or get_engine(), progress)
        finally:
            self.discard()
        report.phases = self.phases
        report.seconds = round(time.monotonic() - self.started, 3)
        return report


def ingest_file(
    path: Path,
    *,
    source: str | None = None,
    manifest: ManifestEntry | None = None,
    engine: Engine | None = None,
    today: dt.date | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> BatchReport:
    """Ingest one extract file. Re-ingesting a file already loaded (same SHA-256) is a no-op.

    Raises InputFileError, having changed nothing, when the file as a whole is unusable.
    ``progress(phase, rows)`` hears of the work: rows read, then checked, then written.
    """
    prepared = prepare_file(
        path, source=source, manifest=manifest, engine=engine, today=today, progress=progress
    )
    if isinstance(prepared, BatchReport):
        return prepared
    return prepared.write(engine, progress)


def ingest_files(
    targets: list[tuple[Path, str | None, ManifestEntry | None]],
    *,
    engine: Engine | None = None,
    today: dt.date | None = None,
    progress: Callable[[Path, str, int], None] | None = None,
) -> Iterator[tuple[Path, BatchReport | QamqorError]]:
    """Ingest several files in order, checking the next file while the current one is written.

    Checking runs in DuckDB and writing mostly in the database, so on two cores the overlap
    hides most of the checking (the whole country into SQLite: 844 s one file after the other,
    742 s overlapped). At most two staging engines are alive at once, so peak memory is about
    twice one file's (5.2 GiB against 7.2 GiB for the country).
    """

    def prepare(target: tuple[Path, str | None, ManifestEntry | None]) -> object:
        path, source, entry = target
        report = progress and partial(progress, path)
        try:
            return prepare_file(
                path, source=source, manifest=entry, engine=engine, today=today, progress=report
            )
        except QamqorError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-check") as pool:
        pending = pool.submit(prepare, targets[0]) if targets else None
        try:
            for k, (path, _, _) in enumerate(targets):
                assert pending is not None
                prepared = pending.result()
                pending = pool.submit(prepare, targets[k + 1]) if k + 1 < len(targets) else None
                if isinstance(prepared, PreparedFile):
                    try:
                        report = prepared.write(engine, progress and partial(progress, path))
                    except QamqorError as exc:
                        yield path, exc
                        continue
                    yield path, report
                else:
                    yield path, prepared  # type: ignore[misc]
        finally:
            # Stopped early (an error, or the caller closed us): release the file checked ahead.
            if pending is not None:
                ahead = pending.result()
                if isinstance(ahead, PreparedFile):
                    ahead.discard()


def prepare_file(
    path: Path,
    *,
    source: str | None = None,
    manifest: ManifestEntry | None = None,
    engine: Engine | None = None,
    today: dt.date | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> PreparedFile | BatchReport:
    """Read and check a file, or report it as already ingested. Writes nothing."""
    started = time.monotonic()
    engine = engine or get_engine()
    received_at = dt.datetime.now(dt.UTC)
    today = today or received_at.date()
    info = reading.inspect_file(path)
    if manifest is not None and manifest.sha256 and manifest.sha256 != info.sha256:
        raise InputFileError(
            f"{path}: the file differs from its manifest (SHA-256 {info.sha256[:12]}… instead of "
            f"{manifest.sha256[:12]}…): it was truncated or altered after the manifest was made"
        )
    existing = _existing_batch(engine, info.sha256)
    if existing is not None:
        return _already(info, existing, started)
    columns = reading.file_columns(info)
    src = reading.match_source(info, columns, source)

    settings = get_settings()
    settings.staging_dir.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix="ingest-", dir=settings.staging_dir))
    con = duckdb.connect(
        config={
            "memory_limit": settings.ingest_memory_limit,
            "threads": settings.ingest_threads,
            "temp_directory": str(spill),
            "preserve_insertion_order": False,
            # No call leaves the machine: DuckDB would otherwise download missing extensions.
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        phases: dict[str, float] = {}
        mark = time.monotonic()
        read = _stage(con, info, src, progress)
        phases["read"] = round(time.monotonic() - mark, 3)
        if manifest is not None and manifest.rows is not None and manifest.rows != read.rows:
            raise InputFileError(
                f"{path}: the manifest announces {manifest.rows:,} rows but the file holds "
                f"{read.rows:,}: it was cut or padded after the manifest was made"
            )
        if progress is not None:
            progress("checking", read.rows)
        mark = time.monotonic()
        _classify(con, info, src, today)
        phases["check"] = round(time.monotonic() - mark, 3)
        prepared = _count(con, info, src, read, spill, started, received_at, phases)
    except BaseException:
        _release(con, spill)
        raise
    return prepared


def _release(con: duckdb.DuckDBPyConnection, spill: Path) -> None:
    """Close a staging engine and delete what it spilled to disk."""
    con.close()
    shutil.rmtree(spill, ignore_errors=True)


def _stage(
    con: duckdb.DuckDBPyConnection,
    info: reading.FileInfo,
    src: Source,
    progress: Callable[[str, int], None] | None,
) -> reading.ReadResult:
    columns = ", ".join(f'"{c}" VARCHAR' for c in src.column_names)
    con.execute(f"CREATE TABLE staged ({columns}, line_no BIGINT, raw VARCHAR)")
    read = reading.ReadResult()
    for batch in reading.read_rows(info, src, read):
        if batch is reading.RESTART:
            con.execute("DELETE FROM staged")
            continue
        con.register("incoming", batch)
        con.execute("INSERT INTO staged SELECT * FROM incoming")
        con.unregister("incoming")
        if progress is not None:
            progress("reading", read.rows)
    if read.rows == 0:
        raise InputFileError(f"{info.path}: the file has a header but no data rows")
    return read


def _classify(
    con: duckdb.DuckDBPyConnection, info: reading.FileInfo, src: Source, today: dt.date
) -> None:
    """Turn ``staged`` into ``classified``: every row a fact, a rejection or a duplicate."""
    raw_columns = ", ".join(f'"{c}"' for c in src.column_names)
    record_id = "NULLIF(trim(record_id), '')"
    # A Parquet row has no text of its own: a rejected one keeps its values as JSON instead.
    raw_values = (
        "struct_pack(" + ", ".join(f'"{c}" := "{c}"' for c in src.column_names) + ")"
        if info.format == "parquet"
        else "CAST(NULL AS VARCHAR)"
    )
    # copy_no > 1: an exact copy of an earlier line, skipped. conflict: the registry sent the
    # same record id with different contents; nothing tells which one is right, so all are refused.
    windowed = f"""(
        SELECT *, {raw_values} AS raw_values,
               row_number() OVER (PARTITION BY {raw_columns} ORDER BY line_no) AS copy_no,
               CASE WHEN {record_id} IS NULL THEN false
                    ELSE min(row_hash) OVER w <> max(row_hash) OVER w END AS conflict
        FROM (SELECT *, hash({raw_columns}) AS row_hash FROM staged)
        WINDOW w AS (PARTITION BY {record_id})
    )"""
    checked = validation_sql(
        src, windowed, today, passthrough=("copy_no", "conflict", "raw_values")
    )
    # One statement, so DuckDB streams the windows into the checks without materialising them.
    con.execute(
        f"""
        CREATE TABLE classified AS
        SELECT *, CASE WHEN copy_no > 1 THEN 'duplicate'
                       WHEN conflict THEN 'rejected'
                       WHEN len(all_reasons) > 0 THEN 'rejected'
                       ELSE 'fact' END AS outcome,
               CASE WHEN conflict THEN list_append(all_reasons, 'conflicting_record_id')
                    ELSE all_reasons END AS final_reasons
        FROM ({checked})
        """
    )
    con.execute("DROP TABLE staged")


def _count(
    con: duckdb.DuckDBPyConnection,
    info: reading.FileInfo,
    src: Source,
    read: reading.ReadResult,
    spill: Path,
    started: float,
    received_at: dt.datetime,
    phases: dict[str, float],
) -> PreparedFile:
    counts = dict(
        con.execute("SELECT outcome, count(*) FROM classified GROUP BY outcome").fetchall()
    )
    facts = int(counts.get("fact", 0))
    duplicates = int(counts.get("duplicate", 0))
    rejections = int(counts.get("rejected", 0)) + len(read.structural)
    if read.rows != facts + duplicates + rejections:
        raise RuntimeError(
            f"ingest does not reconcile for {info.path}: read {read.rows}, facts {facts}, "
            f"duplicates {duplicates}, rejections {rejections}"
        )
    reasons: dict[str, int] = {}
    for reason, n in con.execute(
        "SELECT r, count(*) FROM (SELECT unnest(final_reasons) AS r FROM classified "
        "WHERE outcome = 'rejected') GROUP BY r"
    ).fetchall():
        reasons[reason] = int(n)
    for structural in read.structural:
        reasons[structural.reason] = reasons.get(structural.reason, 0) + 1
    return PreparedFile(
        info=info,
        src=src,
        read=read,
        con=con,
        spill=spill,
        started=started,
        received_at=received_at,
        facts=facts,
        duplicates=duplicates,
        rejections=rejections,
        reasons=dict(sorted(reasons.items())),
        phases=phases,
    )


def _write(
    prepared: PreparedFile, engine: Engine, progress: Callable[[str, int], None] | None
) -> BatchReport:
    """Store a prepared file in one transaction: batch, facts, rejections."""
    con, info, src, read, phases = (
        prepared.con,
        prepared.info,
        prepared.src,
        prepared.read,
        prepared.phases,
    )
    facts = prepared.facts
    fact_columns = [fact_column(c) for c in src.columns]
    date_like = {fact_column(c) for c in src.columns if c.type in ("date", "month")}
    out_columns = [
        *(f'CAST("{c}" AS VARCHAR)' if c in date_like else f'"{c}"' for c in fact_columns),
        "line_no",
        "CAST(valid_from AS VARCHAR)",
        "CAST(valid_to AS VARCHAR)",
    ]
    table_columns = [*fact_columns, "line_no", "valid_from", "valid_to", "batch_id"]
    fact_table = FACT_TABLES[src.code]
    # Special categories (diagnoses) are sealed here, batch by batch, before any byte of them
    # reaches the database; the rejections' raw text of such a source is sealed whole.
    special = src.has_special_columns
    if special:
        phases["seal"] = 0.0
    try:
        with engine.begin() as conn:
            batch_id = conn.execute(
                insert(Batch)
                .values(
                    source=src.code,
                    file_name=info.path.name,
                    file_sha256=info.sha256,
                    file_bytes=info.size,
                    format=info.format,
                    encoding=info.encoding,
                    delimiter=info.delimiter,
                    rows_read=read.rows,
                    facts=facts,
                    rejections=prepared.rejections,
                    duplicates=prepared.duplicates,
                    rejection_reasons=prepared.reasons,
                    received_at=prepared.received_at,
                    loaded_at=prepared.received_at,
                )
                .returning(Batch.id)
            ).scalar_one()

            def fact_batches() -> Iterator[pa.RecordBatch]:
                relation = con.sql(
                    f"SELECT {', '.join(out_columns)}, CAST({batch_id} AS BIGINT) "
                    "FROM classified WHERE outcome = 'fact' ORDER BY line_no"
                )
                # DuckDB 2 renamed fetch_arrow_reader to to_arrow_reader.
                to_reader = getattr(relation, "to_arrow_reader", None)
                if to_reader is None:
                    to_reader = relation.fetch_arrow_reader
                done = 0
                for batch in to_reader(WRITE_BATCH_ROWS):
                    if special:
                        mark = time.monotonic()
                        batch = fields.seal_record_batch(
                            fact_table, pa.RecordBatch.from_arrays(batch.columns, table_columns)
                        )
                        phases["seal"] += time.monotonic() - mark
                    yield batch
                    done += batch.num_rows
                    if progress is not None:
                        progress("writing", done)

            # Keeping the secondary indexes up to date row by row makes a bulk load 3x slower
            # (2 M rows into SQLite: 14 s with them, 3.5 s + 1.7 s to rebuild them after).
            # When a batch at least doubles its table, drop them and rebuild them once; DDL is
            # transactional on both databases, so a failure still leaves the table as it was.
            existing = conn.execute(
                select(func.coalesce(func.max(fact_table.c.id), 0))
            ).scalar_one()
            rebuild = facts > 0 and facts >= existing
            if rebuild:
                for index in fact_table.indexes:
                    index.drop(conn)
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA cache_size=-262144")  # 256 MiB for this load
            else:
                conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
            mark = time.monotonic()
            written = bulk_insert(conn, fact_table.name, table_columns, fact_batches())
            phases["write"] = round(time.monotonic() - mark, 3)
            if rebuild:
                mark = time.monotonic()
                for index in fact_table.indexes:
                    index.create(conn)
                if conn.dialect.name == "postgresql":
                    # fresh statistics: with none, the planner scanned whole fact tables for
                    # one household's members right after a bulk load
                    conn.exec_driver_sql(f'ANALYZE "{fact_table.name}"')
                phases["index"] = round(time.monotonic() - mark, 3)
            if written != facts:
                raise RuntimeError(f"wrote {written} facts, expected {facts}")
            if special:
                phases["seal"] = round(phases["seal"], 3)
            bulk_insert(
                conn,
                Rejection.__tablename__,
                ["batch_id", "line_no", "source_record_id", "reasons", "raw", "raw_sealed"],
                _rejection_batches(con, info, read, batch_id, sealed=special),
            )
            conn.execute(
                update(Batch).where(Batch.id == batch_id).values(loaded_at=dt.datetime.now(dt.UTC))
            )
            mark = time.monotonic()
        phases["commit"] = round(time.monotonic() - mark, 3)
    except IntegrityError:
        # Another process loaded the same file meanwhile: its batch stands, ours is rolled back.
        existing = _existing_batch(engine, info.sha256)
        if existing is None:
            raise
        return _already(info, existing, time.monotonic())
    return BatchReport(
        file=str(info.path),
        status="loaded",
        source=src.code,
        batch_id=batch_id,
        sha256=info.sha256,
        format=info.format,
        encoding=info.encoding,
        delimiter=info.delimiter,
        rows_read=read.rows,
        facts=facts,
        rejections=prepared.rejections,
        duplicates=prepared.duplicates,
        seconds=0.0,
        rejection_reasons=prepared.reasons,
    )


def _storable(raw: str) -> str:
    """Raw text as a database can hold it: NUL (which PostgreSQL text refuses) as ``\\x00``."""
    return raw.replace("\x00", "\\x00") if "\x00" in raw else raw


def _rejection_batches(
    con: duckdb.DuckDBPyConnection,
    info: reading.FileInfo,
    read: reading.ReadResult,
    batch_id: int,
    *,
    sealed: bool = False,
) -> Iterator[pa.RecordBatch]:
    """The rejections' rows; with ``sealed`` the raw text goes encrypted into ``raw_sealed``
    (bound to its batch and line) and ``raw`` keeps only a marker."""
    schema = pa.schema(
        [
            ("batch_id", pa.int64()),
            ("line_no", pa.int64()),
            ("source_record_id", pa.string()),
            ("reasons", pa.string()),
            ("raw", pa.string()),
            ("raw_sealed", pa.string()),
        ]
    )
    table = Rejection.__table__

    def seal(batch: pa.RecordBatch) -> pa.RecordBatch:
        if not sealed or batch.num_rows == 0:
            return batch
        batch = batch.set_column(5, "raw_sealed", batch.column(4))
        batch = fields.seal_record_batch(table, batch)  # type: ignore[arg-type]
        marker = pa.array([RAW_SEALED] * batch.num_rows, pa.string())
        return batch.set_column(4, "raw", marker)

    if read.structural:
        yield seal(
            pa.RecordBatch.from_pylist(
                [
                    {
                        "batch_id": batch_id,
                        "line_no": s.line_no,
                        "source_record_id": None,
                        "reasons": s.reason,
                        "raw": _storable(s.raw.rstrip("\r\n")),
                        "raw_sealed": None,
                    }
                    for s in read.structural
                ],
                schema=schema,
            )
        )
    cursor = con.execute(
        "SELECT line_no, source_record_id, array_to_string(final_reasons, ' '), "
        "COALESCE(raw, CAST(to_json(raw_values) AS VARCHAR)) "
        "FROM classified WHERE outcome = 'rejected' ORDER BY line_no"
    )
    # Rows of the fast path carry no text: look it up in the file, chunk after chunk, in one
    # pass (chunks come in line order). Parquet rows always carry theirs (as JSON).
    lookup = reading.LineLookup(info) if info.format != "parquet" else None
    try:
        while chunk := cursor.fetchmany(WRITE_BATCH_ROWS):
            texts: dict[int, str] = {}
            if lookup is not None:
                texts = lookup.fetch({line for line, _, _, raw in chunk if raw is None})
            rows = []
            for line, record, reasons, raw in chunk:
                if raw is None:
                    raw = texts.get(line)
                rows.append(
                    {
                        "batch_id": batch_id,
                        "line_no": line,
                        # an unusable record id (too long, a NUL) stays readable in `raw`
                        "source_record_id": record
                        if record is not None and len(record) <= 64 and "\x00" not in record
                        else None,
                        "reasons": reasons,
                        "raw": _storable(raw or ""),
                        "raw_sealed": None,
                    }
                )
            yield seal(pa.RecordBatch.from_pylist(rows, schema=schema))
    finally:
        if lookup is not None:
            lookup.close()
