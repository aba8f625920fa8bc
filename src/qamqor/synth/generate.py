"""Generate the population chunk by chunk and stream every extract and truth table to disk.

Each chunk of households draws from its own random stream (seed, chunk number), and the only
state carried between chunks is small: IIN serial counters, record and object numbers. Memory
is therefore bounded by the chunk size, not the population, and the same seed and chunk size
give byte-identical files. (A different ``chunk_households`` gives a different, equally valid
population.)
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qamqor.registry.catalogue import sources
from qamqor.synth import defects, economy
from qamqor.synth.economy import DISABILITY_GROUPS, EMPLOYMENT_STATUS, Rows
from qamqor.synth.population import (
    COMPOSITIONS,
    MALE,
    NO_DATE,
    RELATIONS,
    Households,
    Persons,
    SerialCounter,
    day_number,
    geography,
    make_households,
    make_persons,
)
from qamqor.synth.writers import (
    DEFAULT_FORMATS,
    ExtractWriter,
    FormatSpec,
    TruthWriter,
    date_array,
    extract_table,
    id_strings,
    record_ids,
    sha256_of,
)

YEAR = 365


@dataclass
class SynthSummary:
    out_dir: Path
    households: int
    persons: int
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)  # data rows per source file
    defects: dict[str, int] = field(default_factory=dict)  # instances per defect class


def _months(as_of: dt.date, count: int) -> np.ndarray:
    """``count`` months ending the month before ``as_of``, as months since 1970-01."""
    last = (as_of.year - 1970) * 12 + as_of.month - 2
    return np.arange(last - count + 1, last + 1, dtype=np.int64)


def _population_rows(rng: np.random.Generator, hh: Households, ps: Persons, as_of: int) -> Rows:
    rows = Rows(np.arange(len(ps.age)))
    rows.columns["iin"] = ps.iin.copy()
    rows.columns["last_name"] = ps.last_name
    rows.columns["first_name"] = ps.first_name
    rows.columns["patronymic"] = ps.patronymic
    rows.columns["birth_date"] = ps.birth.copy()
    rows.columns["sex"] = economy.codes(ps.sex, ("M", "F"))
    rows.columns["region_code"] = economy.codes(hh.region[ps.household], geography().codes)
    rows.columns["settlement"] = economy.codes(
        hh.rural[ps.household].astype(np.int64), ("urban", "rural")
    )
    rows.columns["death_date"] = ps.death.copy()
    rows.columns["updated_on"] = economy.updated_on(
        rng, len(ps.age), as_of, 1, np.maximum(ps.death, ps.birth)
    )
    return rows


def _household_rows(
    rng: np.random.Generator, hh: Households, ps: Persons, household_ids: pa.Array, as_of: int
) -> Rows:
    n = len(hh.size)
    head_age = np.zeros(n)
    head = ps.relation == 0
    head_age[ps.household[head]] = ps.age[head]
    formed = as_of - (rng.random(n) * np.clip(head_age - 18, 0.1, 25) * YEAR).astype(np.int64)
    member_from = np.maximum(formed[ps.household], ps.birth)
    dead = ~ps.alive
    member_from = np.where(dead, np.minimum(member_from, ps.death), member_from)
    rows = Rows(np.arange(len(ps.age)))
    rows.columns["household_id"] = household_ids.take(pa.array(ps.household))
    rows.columns["iin"] = ps.iin.copy()
    rows.columns["relation"] = economy.codes(ps.relation, RELATIONS)
    rows.columns["member_from"] = member_from
    rows.columns["member_to"] = ps.death.copy()
    rows.columns["updated_on"] = economy.updated_on(
        rng, len(ps.age), as_of, 30, np.maximum(member_from, ps.death)
    )
    return rows


def _truth_persons(
    hh: Households,
    ps: Persons,
    household_ids: pa.Array,
    status: np.ndarray,
    employer: np.ndarray,
    disability: np.ndarray,
) -> pa.Table:
    return pa.table(
        {
            "iin": id_strings(ps.iin),
            "last_name": ps.last_name,
            "first_name": ps.first_name,
            "patronymic": ps.patronymic,
            "birth_date": date_array(ps.birth),
            "sex": economy.codes(ps.sex, ("M", "F")),
            "household_id": household_ids.take(pa.array(ps.household)),
            "relation": economy.codes(ps.relation, RELATIONS),
            "region_code": economy.codes(hh.region[ps.household], geography().codes),
            "settlement": economy.codes(
                hh.rural[ps.household].astype(np.int64), ("urban", "rural")
            ),
            "alive": pa.array(ps.alive),
            "death_date": date_array(ps.death),
            "pensioner": pa.array(ps.pensioner),
            "employment_status": economy.codes(status, EMPLOYMENT_STATUS),
            "employer_bin": id_strings(employer),
            "disability_group": economy.codes(disability, (*DISABILITY_GROUPS, None)),
        }
    )


def _truth_households(
    hh: Households, ps: Persons, household_ids: pa.Array, income_tiyn: np.ndarray, months: int
) -> pa.Table:
    alive = np.bincount(ps.household[ps.alive], minlength=len(hh.size))
    per_capita = income_tiyn // (months * np.maximum(alive, 1))
    return pa.table(
        {
            "household_id": household_ids,
            "region_code": economy.codes(hh.region, geography().codes),
            "settlement": economy.codes(hh.rural.astype(np.int64), ("urban", "rural")),
            "size": pa.array(hh.size, pa.int32()),
            "members_alive": pa.array(alive, pa.int32()),
            "composition": economy.codes(hh.composition, COMPOSITIONS),
            "income_per_capita_tiyn": pa.array(per_capita, pa.int64()),
        }
    )


def _truth_defects(log: defects.DefectLog, ps: Persons, household_ids: pa.Array) -> pa.Table:
    parts = []
    for name, source, rows, persons, detail in zip(
        log.defect, log.source, log.rows, log.persons, log.details, strict=True
    ):
        k = len(rows)
        record = pa.array(np.maximum(rows, 0))
        parts.append(
            pa.table(
                {
                    "defect": pa.array([name] * k, pa.string()),
                    "source": pa.array([source] * k, pa.string()),
                    "record_id": pc.if_else(
                        pa.array(rows < 0),
                        pa.scalar(None, pa.string()),
                        record_ids(source, np.maximum(rows, 0)),
                    ),
                    "iin": id_strings(ps.iin[persons]),
                    "household_id": household_ids.take(pa.array(ps.household[persons])),
                    "detail": detail,
                }
            )
        )
        del record
    if not parts:
        return pa.table(
            {
                c: pa.array([], pa.string())
                for c in ("defect", "source", "record_id", "iin", "household_id", "detail")
            }
        )
    return pa.concat_tables(parts)


def generate(
    out_dir: Path,
    households: int,
    seed: int,
    *,
    as_of: dt.date = dt.date(2026, 10, 1),
    income_months: int = 3,
    defect_rates: dict[str, float] | None = None,
    formats: dict[str, FormatSpec] | None = None,
    chunk_households: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write ``households`` synthetic households' extracts, truth and manifest into ``out_dir``.

    ``defect_rates`` replaces the defaults class by class (``{}`` keeps them, ``None`` too; pass
    every class at 0 for none); ``formats`` overrides the file format of some sources.
    """
    if households < 1:
        raise ValueError("need at least one household")
    if income_months < 1:
        raise ValueError("need at least one income month")
    rates = dict(defects.DEFAULT_DEFECT_RATES)
    for name, rate in (defect_rates or {}).items():
        if name not in defects.DEFECT_CLASSES:
            raise ValueError(f"unknown defect {name!r}; known: {', '.join(defects.DEFECT_CLASSES)}")
        if not 0 <= rate <= 1:
            raise ValueError(f"defect rate {name}={rate} is not between 0 and 1")
        rates[name] = rate
    specs = dict(DEFAULT_FORMATS)
    for name, spec in (formats or {}).items():
        if name not in specs:
            raise ValueError(f"unknown source {name!r}; known: {', '.join(specs)}")
        specs[name] = spec
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "truth").mkdir(exist_ok=True)
    catalogue = sources()
    writers = {
        code: ExtractWriter(
            out_dir / f"{code}.{specs[code].extension}", catalogue[code], specs[code]
        )
        for code in catalogue
    }
    truth = {
        name: TruthWriter(out_dir / "truth" / f"{name}.parquet")
        for name in ("persons", "households", "defects")
    }
    as_of_day = day_number(as_of)
    months = _months(as_of, income_months)
    counter = SerialCounter()
    employers = economy.Employers.create(seed)
    record_no = dict.fromkeys(catalogue, 0)
    objects = contracts = 0
    persons_total = 0
    defect_counts: Counter[str] = Counter()
    encodings = {code: spec.encoding for code, spec in specs.items()}

    for chunk, first in enumerate(range(0, households, chunk_households)):
        n = min(chunk_households, households - first)
        rng = np.random.default_rng([seed, chunk])
        hh = make_households(rng, first + 1, n)
        ps = make_persons(rng, hh, as_of_day, counter)
        persons_total += len(ps.age)
        household_ids = pc.binary_join_element_wise("HH", id_strings(hh.household_no, 10), "")
        employment, status, employer, jobs = economy.employment(rng, hh, ps, as_of_day, employers)
        disability, current_group = economy.disability(rng, ps, as_of_day)
        # A stream of its own, so adding diagnoses left every other source's values as they were.
        disability.columns["diagnosis"] = economy.diagnoses(
            np.random.default_rng([seed, chunk, 2]), disability.columns["disability_group"]
        )
        income, income_total = economy.income(
            rng, hh, ps, months, as_of_day, status, jobs, current_group, employers.state_payer
        )
        prop = economy.property_rows(rng, hh, ps, as_of_day, objects + 1)
        objects += len(prop)
        finance = economy.finance(rng, ps, as_of_day, contracts + 1)
        contracts += len(finance)
        extracts = {
            "population": _population_rows(rng, hh, ps, as_of_day),
            "household": _household_rows(rng, hh, ps, household_ids, as_of_day),
            "income": income,
            "employment": employment,
            "property": prop,
            "disability": disability,
            "finance": finance,
        }
        defect_rng = np.random.default_rng([seed, chunk, 1])
        log = defects.DefectLog()
        defects.add_rows(
            defect_rng, rates, extracts, ps, household_ids, as_of_day, months, log, counter
        )
        for code, rows in extracts.items():
            rows.columns["record_id"] = record_no[code] + 1 + np.arange(len(rows))
            record_no[code] += len(rows)
        log.number(extracts)
        defects.alter_rows(defect_rng, rates, extracts, ps, as_of_day, months, encodings, log)
        defects.duplicate_rows(defect_rng, rates, extracts, log)

        for code, rows in extracts.items():
            columns = dict(rows.columns)
            numbers = columns["record_id"]
            assert isinstance(numbers, np.ndarray)
            columns["record_id"] = record_ids(code, numbers)
            writers[code].write(extract_table(catalogue[code], columns, specs[code]))
        truth["persons"].write(
            _truth_persons(hh, ps, household_ids, status, employer, current_group)
        )
        truth["households"].write(
            _truth_households(hh, ps, household_ids, income_total, len(months))
        )
        truth["defects"].write(_truth_defects(log, ps, household_ids))
        for name, rows_logged in zip(log.defect, log.rows, strict=True):
            defect_counts[name] += len(rows_logged)
        if progress is not None:
            progress(first + n)

    for writer in writers.values():
        writer.close()
    for truth_writer in truth.values():
        truth_writer.close()
    files = []
    for code, writer in writers.items():
        files.append(
            {
                "source": code,
                "path": writer.path.name,
                **specs[code].manifest(),
                "rows": writer.rows,
                "sha256": sha256_of(writer.path),
            }
        )
    manifest = {
        "format_version": 1,
        "generator": "qamqor synth",
        "seed": seed,
        "households": households,
        "as_of": as_of.isoformat(),
        "income_months": income_months,
        "defect_rates": rates,
        "files": files,
    }
    (out_dir / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8"
    )
    return SynthSummary(
        out_dir=out_dir,
        households=households,
        persons=persons_total,
        seconds=time.monotonic() - started,
        rows={code: w.rows for code, w in writers.items()},
        defects={name: defect_counts.get(name, 0) for name in defects.DEFECT_CLASSES},
    )


__all__ = ["MALE", "NO_DATE", "SynthSummary", "generate"]
