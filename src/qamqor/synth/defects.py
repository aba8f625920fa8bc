"""Defects real registry extracts carry, injected into the synthetic ones and logged in the truth.

A rate is the share of *candidates* that get the defect: every extract row for the row-level
classes (``invalid_iin_check_digit``, ``duplicate_rows``), the people who could show it for the
others (the deceased for ``deceased_still_listed`` and ``income_after_death``, wage earners paid
every month for ``missing_income_months``, contracts ended over a year ago for
``stale_records``, living people for ``person_in_two_households``, population rows for
``birth_date_iin_mismatch`` and ``mojibake``, living people for ``duplicate_person``: registered
a second time under a new IIN, same name and birth date).

Injection runs in three steps around record numbering: rows added first (so they get ids),
then values altered and rows dropped (a dropped row leaves a gap in the numbering, as a real
extract filtered after numbering would), then exact duplicates, which repeat their row's id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qamqor.synth import names
from qamqor.synth.economy import INCOME_TYPES, Rows
from qamqor.synth.population import NO_DATE, OTHER, RELATIONS, Persons, SerialCounter

DEFECT_CLASSES = (
    "invalid_iin_check_digit",
    "person_in_two_households",
    "deceased_still_listed",
    "income_after_death",
    "duplicate_rows",
    "stale_records",
    "missing_income_months",
    "birth_date_iin_mismatch",
    "mojibake",
    "duplicate_person",
)
DEFAULT_DEFECT_RATES: dict[str, float] = {
    "invalid_iin_check_digit": 0.002,
    "person_in_two_households": 0.002,
    "deceased_still_listed": 0.05,
    "income_after_death": 0.05,
    "duplicate_rows": 0.002,
    "stale_records": 0.01,
    "missing_income_months": 0.005,
    "birth_date_iin_mismatch": 0.002,
    "mojibake": 0.002,
    "duplicate_person": 0.001,
}
YEAR = 365


@dataclass
class DefectLog:
    """Defect instances of one chunk, by record number (-1 for a missing row).

    Rows added before numbering are logged by position and turned into record numbers by
    ``number``; later steps log record numbers directly.
    """

    defect: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)  # -1 = the row is missing
    persons: list[np.ndarray] = field(default_factory=list)
    details: list[pa.Array] = field(default_factory=list)

    def add(
        self,
        defect: str,
        source: str,
        rows: np.ndarray,
        persons: np.ndarray,
        detail: pa.Array | str,
    ) -> None:
        if len(persons) == 0:
            return
        if isinstance(detail, str):
            detail = pa.array([detail] * len(persons), pa.string())
        self.defect.append(defect)
        self.source.append(source)
        self.rows.append(np.asarray(rows, dtype=np.int64))
        self.persons.append(np.asarray(persons, dtype=np.int64))
        self.details.append(detail)

    def number(self, extracts: dict[str, Rows]) -> None:
        """Positions logged so far become record numbers (call once, right after numbering)."""
        for i, (source, rows) in enumerate(zip(self.source, self.rows, strict=True)):
            record = extracts[source].columns["record_id"]
            assert isinstance(record, np.ndarray)
            self.rows[i] = np.where(rows >= 0, record[np.maximum(rows, 0)], -1)


def _records(rows: Rows, positions: np.ndarray) -> np.ndarray:
    record = rows.columns["record_id"]
    assert isinstance(record, np.ndarray)
    return record[positions]


def _pick(rng: np.random.Generator, candidates: np.ndarray, rate: float) -> np.ndarray:
    if rate <= 0 or len(candidates) == 0:
        return candidates[:0]
    return candidates[rng.random(len(candidates)) < rate]


def _month_text(months: np.ndarray) -> pa.Array:
    from qamqor.synth.writers import month_strings

    return month_strings(months)


def add_rows(
    rng: np.random.Generator,
    rates: dict[str, float],
    extracts: dict[str, Rows],
    ps: Persons,
    household_ids: pa.Array,
    as_of: int,
    months: np.ndarray,
    log: DefectLog,
    counter: SerialCounter | None = None,
) -> None:
    """Defects that add rows: they need record ids like any other row."""
    alive = np.flatnonzero(ps.alive)
    chosen = _pick(rng, alive, rates.get("duplicate_person", 0.0))
    if len(chosen) and counter is not None:
        population = extracts["population"]
        position = np.full(len(ps.age), -1, dtype=np.int64)
        position[population.person] = np.arange(len(population))
        chosen = chosen[position[chosen] >= 0]
        extra = population.take(position[chosen])
        # A second registration: same person, a fresh IIN from the same birth date and sex.
        extra.columns["iin"] = counter.allocate(ps.birth[chosen], ps.sex[chosen])
        start = len(population)
        extracts["population"] = Rows.concat([population, extra])
        detail = pa.array([f"registered again as {v:012d}" for v in extra.columns["iin"]])
        log.add("duplicate_person", "population", start + np.arange(len(chosen)), chosen, detail)
    n_households = len(household_ids)
    chosen = _pick(rng, alive, rates.get("person_in_two_households", 0.0))
    if len(chosen) and n_households > 1:
        own = ps.household[chosen]
        other = (own + 1 + rng.integers(0, n_households - 1, len(chosen))) % n_households
        extra = Rows(chosen)
        extra.columns["household_id"] = household_ids.take(pa.array(other))
        extra.columns["iin"] = ps.iin[chosen]
        extra.columns["relation"] = pa.array([RELATIONS[OTHER]] * len(chosen), pa.string())
        extra.columns["member_from"] = as_of - rng.integers(30, 2 * YEAR, len(chosen))
        extra.columns["member_to"] = np.full(len(chosen), NO_DATE)
        extra.columns["updated_on"] = as_of - rng.integers(1, 30, len(chosen))
        start = len(extracts["household"])
        extracts["household"] = Rows.concat([extracts["household"], extra])
        detail = pc.binary_join_element_wise(
            "also member of ", household_ids.take(pa.array(own)), ""
        )
        log.add(
            "person_in_two_households", "household", start + np.arange(len(chosen)), chosen, detail
        )

    income = extracts["income"]
    rate = rates.get("income_after_death", 0.0)
    if rate > 0 and len(months) > 1:
        dead = np.flatnonzero(~ps.alive)
        chosen = _pick(rng, dead, rate)
        flag = np.zeros(len(ps.age), dtype=bool)
        flag[chosen] = True
        death_month = ps.death.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
        kind = pc.index_in(income.columns["income_type"], pa.array(INCOME_TYPES)).to_numpy(
            zero_copy_only=False
        )
        period = income.columns["period"]
        assert isinstance(period, np.ndarray)
        last_paid = np.flatnonzero(
            flag[income.person] & (period == death_month[income.person]) & (kind <= 1)
        )
        copies = []
        for k in range(1, len(months)):
            src = last_paid[period[last_paid] + k <= months[-1]]
            if len(src):
                part = income.take(src)
                part.columns["period"] = period[src] + k
                updated = part.columns["updated_on"]
                assert isinstance(updated, np.ndarray)
                part.columns["updated_on"] = np.minimum(updated + 31 * k, as_of - 1)
                copies.append(part)
        if copies:
            extra = Rows.concat(copies)
            start = len(income)
            extracts["income"] = Rows.concat([income, extra])
            extra_period = extra.columns["period"]
            assert isinstance(extra_period, np.ndarray)
            detail = pc.binary_join_element_wise(
                "paid for ", _month_text(extra_period), " after death", ""
            )
            log.add(
                "income_after_death", "income", start + np.arange(len(extra)), extra.person, detail
            )


def alter_rows(
    rng: np.random.Generator,
    rates: dict[str, float],
    extracts: dict[str, Rows],
    ps: Persons,
    as_of: int,
    months: np.ndarray,
    specs_encoding: dict[str, str | None],
    log: DefectLog,
) -> None:
    """Defects that change values in place or drop rows (after record ids are assigned)."""
    # Drop first, so no other defect lands on a row that then disappears.
    rate = rates.get("missing_income_months", 0.0)
    income = extracts["income"]
    if rate > 0 and len(months) > 1:
        kind = pc.index_in(income.columns["income_type"], pa.array(INCOME_TYPES)).to_numpy(
            zero_copy_only=False
        )
        wage_rows = np.flatnonzero(kind == 0)
        counts = np.bincount(income.person[wage_rows], minlength=len(ps.age))
        chosen = _pick(rng, np.flatnonzero(counts == len(months)), rate)
        drop_month = months[rng.integers(0, len(months), len(chosen))]
        flag = np.full(len(ps.age), -1, dtype=np.int64)
        flag[chosen] = drop_month
        period = income.columns["period"]
        assert isinstance(period, np.ndarray)
        dropped = wage_rows[flag[income.person[wage_rows]] == period[wage_rows]]
        keep = np.ones(len(income), dtype=bool)
        keep[dropped] = False
        detail = pc.binary_join_element_wise("no wage row for ", _month_text(period[dropped]), "")
        log.add(
            "missing_income_months",
            "income",
            np.full(len(dropped), -1),
            income.person[dropped],
            detail,
        )
        extracts["income"] = income.take(np.flatnonzero(keep))

    household = extracts["household"]
    member_to = household.columns["member_to"]
    assert isinstance(member_to, np.ndarray)
    ended_by_death = np.flatnonzero((member_to != NO_DATE) & ~ps.alive[household.person])
    chosen = _pick(rng, ended_by_death, rates.get("deceased_still_listed", 0.0))
    member_to[chosen] = NO_DATE
    log.add(
        "deceased_still_listed",
        "household",
        _records(household, chosen),
        household.person[chosen],
        "died, still a current member",
    )

    employment = extracts["employment"]
    end = employment.columns["end_date"]
    updated = employment.columns["updated_on"]
    assert isinstance(end, np.ndarray) and isinstance(updated, np.ndarray)
    old_ended = np.flatnonzero((end != NO_DATE) & (end < as_of - 400) & ps.alive[employment.person])
    chosen = _pick(rng, old_ended, rates.get("stale_records", 0.0))
    updated[chosen] = end[chosen] + rng.integers(0, 30, len(chosen))
    end[chosen] = NO_DATE
    log.add(
        "stale_records",
        "employment",
        _records(employment, chosen),
        employment.person[chosen],
        "contract ended, still open",
    )

    population = extracts["population"]
    birth = population.columns["birth_date"]
    assert isinstance(birth, np.ndarray)
    chosen = _pick(rng, np.arange(len(population)), rates.get("birth_date_iin_mismatch", 0.0))
    shift = rng.integers(1, 400, len(chosen)) * np.where(rng.random(len(chosen)) < 0.5, -1, 1)
    birth[chosen] = np.minimum(birth[chosen] + shift, as_of - 1)
    log.add(
        "birth_date_iin_mismatch",
        "population",
        _records(population, chosen),
        population.person[chosen],
        "birth_date differs from the IIN",
    )

    chosen = _pick(rng, np.arange(len(population)), rates.get("mojibake", 0.0))
    if len(chosen):
        column = np.array(["last_name", "first_name"])[rng.integers(0, 2, len(chosen))]
        for name in ("last_name", "first_name"):
            rows = chosen[column == name]
            values = population.columns[name]
            assert isinstance(values, pa.Array)
            texts = values.take(pa.array(rows)).to_pylist()
            garbled = [names.mojibake(t, specs_encoding.get("population")) for t in texts]
            mask = np.zeros(len(values), dtype=bool)
            mask[rows] = True
            population.columns[name] = pc.replace_with_mask(
                values, pa.array(mask), pa.array(garbled, pa.string())
            )
            log.add(
                "mojibake",
                "population",
                _records(population, rows),
                population.person[rows],
                f"{name} garbled",
            )

    for source, rows in extracts.items():
        iin = rows.columns["iin"]
        assert isinstance(iin, np.ndarray)
        chosen = _pick(rng, np.arange(len(rows)), rates.get("invalid_iin_check_digit", 0.0))
        last = iin[chosen] % 10
        iin[chosen] += (last + 1 + rng.integers(0, 9, len(chosen))) % 10 - last
        log.add(
            "invalid_iin_check_digit",
            source,
            _records(rows, chosen),
            rows.person[chosen],
            "wrong check digit",
        )


def duplicate_rows(
    rng: np.random.Generator, rates: dict[str, float], extracts: dict[str, Rows], log: DefectLog
) -> None:
    """Exact copies at the end of the chunk, same record id; logged with the copy's position."""
    rate = rates.get("duplicate_rows", 0.0)
    for source, rows in list(extracts.items()):
        chosen = _pick(rng, np.arange(len(rows)), rate)
        if len(chosen):
            extracts[source] = Rows.concat([rows, rows.take(chosen)])
            log.add(
                "duplicate_rows",
                source,
                _records(rows, chosen),
                rows.person[chosen],
                "exact duplicate",
            )
