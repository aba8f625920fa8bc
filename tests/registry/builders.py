"""Small builders of registry extract files for tests."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.engine import Engine

from qamqor.registry import iin
from qamqor.registry.catalogue import get_source
from qamqor.registry.ingest import expand_paths, ingest_file

FIRST_NAMES = ["Ерлан", "Айгүл", "Нұрлан", "Анна", "Сәбит", "Ольга"]
LAST_NAMES = ["Ахметов", "Иванова", "Сейітқалиев", "Петрова", "Жұмабаев", "Ким"]


def valid_iin(k: int, born: dt.date = dt.date(1985, 3, 14), sex: str = "M") -> str:
    serial = k
    while True:
        number = iin.make_iin(born, sex, serial % 10000)
        if number is not None:
            return number
        serial += 1


def population_rows(n: int, start: int = 0) -> list[dict[str, str]]:
    rows = []
    for k in range(start, start + n):
        sex = "M" if k % 2 == 0 else "F"
        born = dt.date(1950 + k % 60, 1 + k % 12, 1 + k % 28)
        rows.append(
            {
                "record_id": f"POP-{k:08d}",
                "iin": valid_iin(k, born, sex),
                "last_name": LAST_NAMES[k % len(LAST_NAMES)],
                "first_name": FIRST_NAMES[k % len(FIRST_NAMES)],
                "patronymic": "" if k % 3 == 0 else "Серікұлы",
                "birth_date": born.isoformat(),
                "sex": sex,
                "region_code": "71" if k % 2 else "19",
                "settlement": "urban" if k % 3 else "rural",
                "death_date": "",
                "updated_on": "2025-06-01",
            }
        )
    return rows


def income_rows(n: int) -> list[dict[str, str]]:
    rows = []
    for k in range(n):
        rows.append(
            {
                "record_id": f"INC-{k:08d}",
                "iin": valid_iin(k),
                "period": f"2026-0{1 + k % 9}",
                "income_type": ["wage", "pension", "benefit", "self_employment"][k % 4],
                "amount": f"{100000 + k * 37}.{k % 100:02d}",
                "payer_bin": "",
                "updated_on": "2026-10-05",
            }
        )
    return rows


def to_csv_bytes(
    rows: list[dict[str, str]],
    *,
    source: str = "population",
    delimiter: str = ";",
    encoding: str = "utf-8",
    columns: list[str] | None = None,
) -> bytes:
    columns = columns or list(get_source(source).column_names)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    text = buffer.getvalue()
    if encoding == "cp1251":
        # CP1251 has no Kazakh letters but і/І; registries sending it use Russian look-alikes.
        text = text.translate(str.maketrans("әғқңөұүһӘҒҚҢӨҰҮҺ", "агкноууhАГКНОУУH"))
    return text.encode(encoding)


def write_csv(path: Path, rows: list[dict[str, str]], **kwargs: object) -> Path:
    path.write_bytes(to_csv_bytes(rows, **kwargs))  # type: ignore[arg-type]
    return path


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text(
        "".join(
            json.dumps({k: (v if v != "" else None) for k, v in row.items()}, ensure_ascii=False)
            + "\n"
            for row in rows
        ),
        "utf-8",
    )
    return path


def write_parquet(path: Path, rows: list[dict[str, str]], source: str = "population") -> Path:
    columns = get_source(source).column_names
    table = pa.table({c: pa.array([r.get(c) or None for r in rows], pa.string()) for c in columns})
    pq.write_table(table, path)
    return path


def ingest_all(engine: Engine, paths: list[Path], today: dt.date) -> None:
    """Ingest every extract under ``paths`` (as ``synth.generate`` writes them), each accepted."""
    for path, source, entry in expand_paths(paths):
        assert ingest_file(path, source=source, manifest=entry, engine=engine, today=today)
