"""Ingest on both databases: formats, encodings, rejections, duplicates, idempotence, bad files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from qamqor.kit.errors import InputFileError
from qamqor.registry.catalogue import get_source
from qamqor.registry.ingest import ManifestEntry, expand_paths, ingest_file
from qamqor.registry.models import Batch, IncomeFact, PopulationFact, Rejection
from tests.registry.builders import (
    income_rows,
    population_rows,
    to_csv_bytes,
    write_csv,
    write_jsonl,
    write_parquet,
)

TODAY = dt.date(2026, 11, 29)


def count(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def rejections(engine: Engine) -> list[tuple[int, str | None, str, str]]:
    with engine.connect() as conn:
        return [
            tuple(r)  # type: ignore[misc]
            for r in conn.execute(
                select(
                    Rejection.line_no, Rejection.source_record_id, Rejection.reasons, Rejection.raw
                ).order_by(Rejection.line_no)
            )
        ]


@pytest.mark.parametrize(
    ("encoding", "delimiter"),
    [("utf-8", ";"), ("utf-8", ","), ("utf-8-sig", ";"), ("cp1251", ";"), ("cp1251", "\t")],
)
def test_csv_encodings_and_separators(
    engine: Engine, tmp_path: Path, encoding: str, delimiter: str
) -> None:
    rows = population_rows(30)
    path = write_csv(tmp_path / "pop.csv", rows, encoding=encoding, delimiter=delimiter)
    report = ingest_file(path, engine=engine, today=TODAY)
    assert report.status == "loaded"
    assert report.source == "population"
    assert report.encoding == encoding
    assert report.delimiter == delimiter
    assert (report.rows_read, report.facts, report.rejections, report.duplicates) == (30, 30, 0, 0)
    with engine.connect() as conn:
        stored = conn.execute(
            select(
                PopulationFact.iin,
                PopulationFact.last_name,
                PopulationFact.line_no,
                PopulationFact.source_record_id,
                PopulationFact.valid_from,
            ).order_by(PopulationFact.line_no)
        ).all()
    assert [s.iin for s in stored] == [r["iin"] for r in rows]
    names = [s.last_name for s in stored]
    if encoding == "cp1251":
        assert "Сейіткалиев" in names  # CP1251 keeps і but has no қ
    else:
        assert names == [r["last_name"] for r in rows]  # Kazakh letters survive
    assert [s.line_no for s in stored] == list(range(2, 32))
    assert stored[0].source_record_id == "POP-00000000"
    assert str(stored[0].valid_from) == rows[0]["birth_date"]


def test_jsonl_and_parquet(engine: Engine, tmp_path: Path) -> None:
    rows = population_rows(20)
    jsonl = ingest_file(write_jsonl(tmp_path / "pop.jsonl", rows), engine=engine, today=TODAY)
    other = population_rows(15, start=100)
    parquet = ingest_file(
        write_parquet(tmp_path / "pop.parquet", other), engine=engine, today=TODAY
    )
    assert (jsonl.format, jsonl.facts, jsonl.rejections) == ("jsonl", 20, 0)
    assert (parquet.format, parquet.facts, parquet.rejections) == ("parquet", 15, 0)
    assert count(engine, PopulationFact) == 35


def test_money_is_stored_in_tiyn_and_months_as_periods(engine: Engine, tmp_path: Path) -> None:
    rows = income_rows(3)
    rows[0]["amount"] = "152340,5"
    rows[1]["amount"] = "85000"
    rows[2]["amount"] = "0.07"
    path = write_csv(tmp_path / "inc.csv", rows, source="income", delimiter=";")
    report = ingest_file(path, engine=engine, today=TODAY)
    assert report.facts == 3
    with engine.connect() as conn:
        stored = conn.execute(
            select(IncomeFact.amount_tiyn, IncomeFact.period, IncomeFact.valid_to).order_by(
                IncomeFact.line_no
            )
        ).all()
    assert [s.amount_tiyn for s in stored] == [15234050, 8500000, 7]
    assert str(stored[0].period) == "2026-01-01"
    assert str(stored[0].valid_to) == "2026-01-31"


def test_bad_rows_are_rejected_with_line_reason_and_raw_text(
    engine: Engine, tmp_path: Path
) -> None:
    rows = population_rows(6)
    rows[1]["iin"] = rows[1]["iin"][:11] + str((int(rows[1]["iin"][11]) + 1) % 10)
    rows[2]["birth_date"] = "31.02.1990"
    rows[3]["sex"] = "X"
    rows[4]["last_name"] = "Ахметов".encode().decode("cp1251", errors="replace")
    rows[5]["updated_on"] = "2030-01-01"
    path = write_csv(tmp_path / "pop.csv", rows)
    report = ingest_file(path, engine=engine, today=TODAY)
    assert (report.facts, report.rejections, report.duplicates) == (1, 5, 0)
    got = rejections(engine)
    assert [(line, record) for line, record, _, _ in got] == [
        (3, "POP-00000001"),
        (4, "POP-00000002"),
        (5, "POP-00000003"),
        (6, "POP-00000004"),
        (7, "POP-00000005"),
    ]
    assert got[0][2] == "check_digit:iin"
    assert got[1][2] == "bad_date:birth_date"
    assert got[2][2] == "unknown_code:sex"
    assert "mojibake:last_name" in got[3][2]
    assert got[4][2] == "date_in_future:updated_on"
    lines = path.read_text("utf-8").splitlines()
    assert [raw for _, _, _, raw in got] == lines[2:7]
    assert report.rejection_reasons["check_digit:iin"] == 1


def test_missing_values_and_negative_amounts(engine: Engine, tmp_path: Path) -> None:
    rows = income_rows(3)
    rows[0]["iin"] = ""
    rows[1]["amount"] = "-100.00"
    rows[2]["amount"] = "12.345"
    report = ingest_file(
        write_csv(tmp_path / "inc.csv", rows, source="income"), engine=engine, today=TODAY
    )
    assert report.rejections == 3
    assert [r[2] for r in rejections(engine)] == [
        "missing_value:iin",
        "negative_amount:amount",
        "bad_amount:amount",
    ]


def test_exact_duplicates_are_skipped_and_conflicts_refused(engine: Engine, tmp_path: Path) -> None:
    rows = population_rows(4)
    conflicting = dict(rows[2], last_name="Петров")
    path = write_csv(tmp_path / "pop.csv", [*rows, rows[0], rows[0], conflicting])
    report = ingest_file(path, engine=engine, today=TODAY)
    assert report.rows_read == 7
    assert report.duplicates == 2
    assert report.facts == 3  # rows 0, 1 and 3; both versions of row 2 are refused
    assert report.facts + report.rejections + report.duplicates == report.rows_read
    assert {r[1] for r in rejections(engine)} == {"POP-00000002"}
    assert all("conflicting_record_id" in r[2] for r in rejections(engine))


def test_reingesting_the_same_file_is_a_no_op(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pop.csv", population_rows(10))
    first = ingest_file(path, engine=engine, today=TODAY)
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(path.read_bytes())
    second = ingest_file(copy, engine=engine, today=TODAY)
    assert second.status == "already_ingested"
    assert second.batch_id == first.batch_id
    assert count(engine, PopulationFact) == 10
    assert count(engine, Batch) == 1


def test_exact_path_accounts_for_blank_lines_quotes_and_wrong_field_counts(
    engine: Engine, tmp_path: Path
) -> None:
    body = to_csv_bytes(population_rows(3)).decode()
    lines = body.splitlines()
    quoted = lines[3].replace("Ким", '"Ким\nпродолжение"') if "Ким" in lines[3] else lines[3]
    text_ = (
        "\n".join(
            [
                lines[0],
                lines[1],
                "",
                "only;three;fields",
                lines[2],
                quoted.replace(";urban;", ";urban;extra;"),
            ]
        )
        + "\n"
    )
    path = tmp_path / "odd.csv"
    path.write_text(text_, "utf-8")
    report = ingest_file(path, engine=engine, source="population", today=TODAY)
    assert report.rows_read == 5
    assert report.facts == 2
    assert report.rejections == 3
    reasons = {line: reason for line, _, reason, _ in rejections(engine)}
    assert reasons == {3: "empty_line", 4: "wrong_field_count", 6: "wrong_field_count"}


def test_jsonl_exact_path_for_malformed_lines(engine: Engine, tmp_path: Path) -> None:
    rows = population_rows(3)
    path = write_jsonl(tmp_path / "pop.jsonl", rows)
    content = path.read_text("utf-8").splitlines()
    content.insert(1, '{"record_id": "X", "iin": 123')  # broken JSON
    content.insert(2, "[1, 2]")
    content.insert(3, json.dumps({"record_id": "Y", "bogus": 1}))
    path.write_text("\n".join(content) + "\n", "utf-8")
    report = ingest_file(path, engine=engine, today=TODAY)
    assert (report.rows_read, report.facts, report.rejections) == (6, 3, 3)
    assert [(line, reason) for line, _, reason, _ in rejections(engine)] == [
        (2, "malformed_json"),
        (3, "not_an_object"),
        (4, "unexpected_field"),
    ]


def test_parquet_rejections_keep_the_row_values(engine: Engine, tmp_path: Path) -> None:
    rows = population_rows(3)
    rows[1]["sex"] = "?"
    report = ingest_file(write_parquet(tmp_path / "p.parquet", rows), engine=engine, today=TODAY)
    assert report.rejections == 1
    line, record, reason, raw = rejections(engine)[0]
    assert (line, record, reason) == (2, "POP-00000001", "unknown_code:sex")
    assert json.loads(raw)["sex"] == "?"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"record_id;iin\nA;1\n", "cannot tell which registry"),
        (b"PAR1 this is not really parquet", "Parquet"),
        (b"record_id;nonsense;columns\n", "cannot tell"),
    ],
)
def test_unusable_files_change_nothing(
    engine: Engine, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        ingest_file(path, engine=engine, today=TODAY)
    assert count(engine, Batch) == 0
    assert count(engine, Rejection) == 0


def test_header_only_file_is_an_error(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pop.csv", [])
    with pytest.raises(InputFileError, match="no data rows"):
        ingest_file(path, engine=engine, today=TODAY)
    assert count(engine, Batch) == 0


def test_wrong_registry_for_a_file_is_an_error(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pop.csv", population_rows(2))
    with pytest.raises(InputFileError, match="do not match the income registry"):
        ingest_file(path, engine=engine, source="income", today=TODAY)
    assert count(engine, Batch) == 0


def test_an_optional_column_may_be_left_out_a_required_one_may_not(
    engine: Engine, tmp_path: Path
) -> None:
    # An extract made before an optional column joined the catalogue still loads: the
    # population register's patronymic and death date are optional.
    columns = [
        c for c in get_source("population").column_names if c not in ("patronymic", "death_date")
    ]
    old = write_csv(tmp_path / "old.csv", population_rows(3), columns=columns)
    report = ingest_file(old, engine=engine, today=TODAY)
    assert report.reconciles and report.facts == 3
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).where(PopulationFact.patronymic.is_(None))
            ).scalar_one()
            == 3
        )
    columns = [c for c in get_source("population").column_names if c != "birth_date"]
    bad = write_csv(tmp_path / "bad.csv", population_rows(3, 10), columns=columns)
    with pytest.raises(InputFileError, match="missing birth_date"):
        ingest_file(bad, engine=engine, source="population", today=TODAY)


def test_truncated_csv_is_an_error(engine: Engine, tmp_path: Path) -> None:
    data = to_csv_bytes(population_rows(5))
    path = tmp_path / "cut.csv"
    path.write_bytes(data[: data.rindex(b";2025") - 30])
    with pytest.raises(InputFileError, match="truncated"):
        ingest_file(path, engine=engine, today=TODAY)
    assert count(engine, PopulationFact) == 0


def test_file_differing_from_its_manifest_is_an_error(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pop.csv", population_rows(5))
    entry = ManifestEntry(source="population", path=path, sha256="0" * 64, rows=5)
    with pytest.raises(InputFileError, match="differs from its manifest"):
        ingest_file(path, manifest=entry, engine=engine, today=TODAY)
    assert count(engine, Batch) == 0


def test_manifest_directory_expands_to_its_files(tmp_path: Path) -> None:
    write_csv(tmp_path / "pop.csv", population_rows(2))
    (tmp_path / "manifest.json").write_text(
        json.dumps({"files": [{"source": "population", "path": "pop.csv", "rows": 2}]})
    )
    [(path, source, entry)] = expand_paths([tmp_path])
    assert path == tmp_path / "pop.csv"
    assert source == "population"
    assert entry is not None and entry.rows == 2
    with pytest.raises(InputFileError, match="manifest"):
        expand_paths([tmp_path / "pop.csv", tmp_path.parent])


def test_a_failed_write_leaves_no_half_batch(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qamqor.registry import ingest as ingest_module

    calls = {"n": 0}
    real = ingest_module.bulk_insert

    def failing(*args: object, **kwargs: object) -> int:
        calls["n"] += 1
        if calls["n"] == 2:  # facts written, then the rejections fail
            raise RuntimeError("disk full")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module, "bulk_insert", failing)
    rows = population_rows(4)
    rows[0]["sex"] = "?"
    with pytest.raises(RuntimeError, match="disk full"):
        ingest_file(write_csv(tmp_path / "p.csv", rows), engine=engine, today=TODAY)
    assert count(engine, Batch) == 0
    assert count(engine, PopulationFact) == 0


def test_large_file_takes_several_batches(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qamqor.registry import ingest as ingest_module
    from qamqor.registry import reading

    monkeypatch.setattr(reading, "BATCH_ROWS", 100)
    monkeypatch.setattr(reading, "READ_BLOCK", 4096)
    monkeypatch.setattr(ingest_module, "WRITE_BATCH_ROWS", 77)
    rows = population_rows(1000)
    rows[500]["sex"] = "?"
    report = ingest_file(write_csv(tmp_path / "p.csv", rows), engine=engine, today=TODAY)
    assert (report.facts, report.rejections) == (999, 1)
    assert rejections(engine)[0][0] == 502
    with engine.connect() as conn:
        lines = [
            r[0] for r in conn.execute(text("SELECT line_no FROM fact_population ORDER BY line_no"))
        ]
    assert lines == [n for n in range(2, 1002) if n != 502]


def test_progress_hears_each_phase_in_order(engine: Engine, tmp_path: Path) -> None:
    heard: list[tuple[str, int]] = []
    path = write_csv(tmp_path / "p.csv", population_rows(7))
    ingest_file(path, engine=engine, today=TODAY, progress=lambda p, n: heard.append((p, n)))
    phases = [p for p, _ in heard]
    assert phases == sorted(phases, key=["reading", "checking", "writing"].index)
    assert ("checking", 7) in heard
    assert heard[-1] == ("writing", 7)


def test_file_with_other_row_count_than_its_manifest_is_an_error(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "pop.csv", population_rows(5))
    entry = ManifestEntry(source="population", path=path, sha256=None, rows=6)
    with pytest.raises(InputFileError, match="announces 6 rows but the file holds 5"):
        ingest_file(path, manifest=entry, engine=engine, today=TODAY)
    assert count(engine, Batch) == 0


def test_ingest_files_pipelines_in_order_and_survives_a_bad_file(
    engine: Engine, tmp_path: Path
) -> None:
    from qamqor.registry.ingest import ingest_files

    first = write_csv(tmp_path / "a.csv", population_rows(5))
    broken = tmp_path / "b.csv"
    broken.write_bytes(b"")
    again = tmp_path / "c.csv"
    again.write_bytes(first.read_bytes())
    income = write_csv(tmp_path / "d.csv", income_rows(4), source="income")
    heard: list[tuple[str, str]] = []
    outcomes = list(
        ingest_files(
            [(first, None, None), (broken, None, None), (again, None, None), (income, None, None)],
            engine=engine,
            today=TODAY,
            progress=lambda path, phase, rows: heard.append((path.name, phase)),
        )
    )
    assert [path.name for path, _ in outcomes] == ["a.csv", "b.csv", "c.csv", "d.csv"]
    a, b, c, d = (outcome for _, outcome in outcomes)
    assert isinstance(b, InputFileError)
    assert (a.status, a.facts) == ("loaded", 5)  # type: ignore[union-attr]
    assert c.status == "already_ingested"  # type: ignore[union-attr]
    assert (d.source, d.facts) == ("income", 4)  # type: ignore[union-attr]
    assert ("d.csv", "writing") in heard
    assert count(engine, Batch) == 2
    assert not list((tmp_path / "var" / "staging").glob("*"))  # staging engines released


def test_staging_engine_never_downloads_extensions(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    from qamqor.registry import ingest as ingest_module

    configs: list[dict[str, object]] = []
    real_connect = duckdb.connect

    def spy(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        configs.append(dict(kwargs.get("config") or {}))  # type: ignore[call-overload]
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module.duckdb, "connect", spy)
    ingest_file(write_csv(tmp_path / "p.csv", population_rows(2)), engine=engine, today=TODAY)
    assert configs and all(
        c["autoinstall_known_extensions"] is False and c["autoload_known_extensions"] is False
        for c in configs
    )


def test_closing_ingest_files_early_releases_the_file_checked_ahead(
    engine: Engine, tmp_path: Path
) -> None:
    from qamqor.registry.ingest import ingest_files

    first = write_csv(tmp_path / "a.csv", population_rows(3))
    second = write_csv(tmp_path / "b.csv", income_rows(3), source="income")
    outcomes = ingest_files([(first, None, None), (second, None, None)], engine=engine, today=TODAY)
    path, _ = next(outcomes)
    assert path == first
    outcomes.close()  # the caller stops after the first file
    assert not list((tmp_path / "var" / "staging").glob("*"))
    assert count(engine, Batch) == 1


def test_rejections_fetched_in_several_chunks_keep_their_own_text(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qamqor.registry import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "WRITE_BATCH_ROWS", 3)
    rows = population_rows(20)
    for k in range(0, 20, 2):
        rows[k]["sex"] = "?"
    path = write_csv(tmp_path / "p.csv", rows)
    report = ingest_file(path, engine=engine, today=TODAY)
    assert report.rejections == 10
    lines = path.read_text("utf-8").splitlines()
    assert [(line, raw) for line, _, _, raw in rejections(engine)] == [
        (n, lines[n - 1]) for n in range(2, 22, 2)
    ]
