"""What registries know about people besides identity: jobs, income, property, disability, loans.

Assumptions (rounded, from the Bureau of National Statistics and the agencies' annual reports):

- Employment: about 60 % of working-age town dwellers and 50 % of villagers hold a job under an
  employment contract (ЕСУТД), 10-16 % are self-employed (more in villages), 4.5 % are registered
  unemployed at an employment centre; 8 % of pensioners still work. A third of the employed have
  an earlier, ended contract. Employers are a pool of 2,000 BINs per region, skewed so a few are
  large.
- Wages: log-normal, median 300,000 ₸/month (σ 0.6, so the mean is ~360,000 as published), 1.15x
  in the oil regions (Atyrau, Mangystau) and the two big cities, 0.8x in villages, never below the
  МЗП of 85,000 ₸; ±5 % month to month, with a bonus month now and then.
- Pensions: ~150,000 ₸ (σ 35,000, 75,000-350,000) from the state pension payer (ГЦВП).
- Benefits: families with three or more children under 18 receive a child benefit of 17,000 ₸
  per child; people with a current disability receive 55,000-100,000 ₸ by group.
- Self-employment: median 120,000 ₸, declared in ~70 % of months.
- Disability: ~3.5 % of people (1.4 % of children, rising with age), groups 1/2/3 in 10/40/50 %.
  Each carries the ICD-10 (МКБ-10) code of the underlying condition, drawn from conditions
  typical of its group (cerebral palsy, Down syndrome, autism for children; stroke sequelae,
  blindness, end-stage kidney disease for group 1...); 8 % of records have none.
- Property: 82 % of urban and 90 % of rural households own their dwelling (18-25 m² a person),
  8 % a second one; 60 % of rural and 10 % of urban households a land plot; 30 % a vehicle.
- Finance: a third of adults have a consumer loan, 10 % a microloan, 5-9 % a mortgage (ages
  25-55) and a quarter a deposit; a quarter of loans in the extract are already closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qamqor.synth.population import (
    FEMALE,
    HEAD,
    MALE,
    NO_DATE,
    SPOUSE,
    Households,
    Persons,
    check_digits,
    geography,
)

EMPLOYERS_PER_REGION = 2_000
MZP_TIYN = 85_000_00
YEAR = 365

# truth employment status per person
NOT_WORKING, EMPLOYED, SELF_EMPLOYED, UNEMPLOYED = 0, 1, 2, 3
EMPLOYMENT_STATUS = (None, "employed", "self_employed", "unemployed_registered")
INCOME_TYPES = ("wage", "pension", "benefit", "self_employment")
PROPERTY_TYPES = ("dwelling", "land", "vehicle")
PRODUCTS = ("consumer_loan", "mortgage", "microloan", "deposit")
DISABILITY_GROUPS = ("1", "2", "3", "child")
HIGH_WAGE_REGIONS = ("23", "47", "71", "75")


@dataclass
class Rows:
    """One source's rows for a chunk before formatting.

    Columns hold numpy arrays (ids and dates as int64 with -1 / NO_DATE for empty, money and
    decimals as int64 hundredths, months as months since 1970-01) or Arrow strings; ``person``
    is the row's subject as an index into the chunk's persons.
    """

    person: np.ndarray
    columns: dict[str, np.ndarray | pa.Array] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.person)

    def take(self, index: np.ndarray) -> Rows:
        taken = Rows(self.person[index])
        for name, col in self.columns.items():
            taken.columns[name] = (
                col[index] if isinstance(col, np.ndarray) else col.take(pa.array(index))
            )
        return taken

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        out = Rows(np.concatenate([p.person for p in parts]))
        for name, col in parts[0].columns.items():
            if isinstance(col, np.ndarray):
                out.columns[name] = np.concatenate([p.columns[name] for p in parts])
            else:
                out.columns[name] = pa.concat_arrays([p.columns[name] for p in parts])
        return out


def codes(values: np.ndarray, vocabulary: tuple[str | None, ...]) -> pa.Array:
    return pa.array(vocabulary).take(pa.array(values))


def make_bins(rng: np.random.Generator, n: int, first_serial: int = 0) -> np.ndarray:
    """Valid BINs of legal entities: YYMM of registration, 4 (legal entity), 0, serial, check."""
    yymm = rng.integers(1995, 2026, 2 * n) % 100 * 100 + rng.integers(1, 13, 2 * n)
    serial = first_serial + np.arange(2 * n)
    first11 = yymm * 10_000_000 + 40 * 100_000 + serial
    check, issuable = check_digits(first11)
    return (first11 * 10 + check)[issuable][:n]


@dataclass(frozen=True)
class Employers:
    bins: np.ndarray  # region-major: EMPLOYERS_PER_REGION per region
    state_payer: int  # pensions and benefits (ГЦВП)

    @staticmethod
    def create(seed: int) -> Employers:
        rng = np.random.default_rng([seed, 0xB1])
        n = EMPLOYERS_PER_REGION * len(geography().codes)
        bins = make_bins(rng, n + 1)
        return Employers(bins=bins[1:], state_payer=int(bins[0]))


def updated_on(
    rng: np.random.Generator, n: int, as_of: int, cadence: int, not_before: np.ndarray
) -> np.ndarray:
    """Mostly within one cadence before as_of, one in ten older; never before the row's dates."""
    recent = as_of - rng.integers(1, cadence + 1, n)
    older = as_of - rng.integers(cadence + 1, 3 * YEAR, n)
    day = np.where(rng.random(n) < 0.9, recent, older)
    return np.minimum(np.maximum(day, not_before), as_of - 1)


@dataclass
class Truth:
    status: np.ndarray
    employer: np.ndarray  # BIN or -1
    disability: np.ndarray  # index into DISABILITY_GROUPS or -1 (current at as_of)
    income_tiyn: np.ndarray  # per household: total over the extract months


@dataclass
class Contracts:
    """Employment contracts (current and previous) that pay a wage: who, which BIN, when."""

    person: np.ndarray
    employer: np.ndarray
    start: np.ndarray
    end: np.ndarray  # NO_DATE while open


def employment(
    rng: np.random.Generator, hh: Households, ps: Persons, as_of: int, employers: Employers
) -> tuple[Rows, np.ndarray, np.ndarray, Contracts]:
    """Contracts, self-employment and registered unemployment.

    Returns the rows, each person's status and current employer, and the wage-paying contracts
    (a wage is paid by the employer whose contract covers the month, previous jobs included).
    """
    p = len(ps.age)
    rural = hh.rural[ps.household]
    working_age = (ps.age >= 18) & ~ps.pensioner
    u = rng.random(p)
    employed_share = np.where(rural, 0.50, 0.60)
    self_share = np.where(rural, 0.16, 0.10)
    status = np.select(
        [
            u < employed_share,
            u < employed_share + self_share,
            u < employed_share + self_share + 0.045,
        ],
        [EMPLOYED, SELF_EMPLOYED, UNEMPLOYED],
        default=NOT_WORKING,
    )
    status = np.where(working_age, status, np.where(ps.pensioner & (u < 0.08), EMPLOYED, 0))
    employer_idx = hh.region[ps.household] * EMPLOYERS_PER_REGION + (
        EMPLOYERS_PER_REGION * rng.random(p) ** 3
    ).astype(np.int64)
    employer = np.where(status == EMPLOYED, employers.bins[employer_idx], -1)
    adult_from = ps.birth + 18 * YEAR
    start = np.select(
        [status == UNEMPLOYED, status == SELF_EMPLOYED],
        [as_of - rng.integers(10, 360, p), as_of - rng.integers(30, 8 * YEAR, p)],
        default=as_of - 30 - (rng.random(p) * np.clip(ps.age - 18, 0, 12) * YEAR).astype(np.int64),
    )
    start = np.minimum(np.maximum(start, adult_from), as_of - 1)
    dead = ~ps.alive
    start = np.where(dead, np.minimum(start, ps.death - 1), start)
    end = np.where(dead, ps.death, NO_DATE)
    current = np.flatnonzero(status > 0)

    previous = np.flatnonzero((status == EMPLOYED) & (ps.age >= 25) & (rng.random(p) < 0.33))
    prev_end = start[previous] - rng.integers(1, 60, len(previous))
    prev_start = np.maximum(
        prev_end - rng.integers(180, 8 * YEAR, len(previous)), adult_from[previous]
    )
    keep = prev_start < prev_end
    previous, prev_start, prev_end = previous[keep], prev_start[keep], prev_end[keep]
    prev_employer = employers.bins[
        hh.region[ps.household[previous]] * EMPLOYERS_PER_REGION
        + rng.integers(0, EMPLOYERS_PER_REGION, len(previous))
    ]
    person = np.concatenate([current, previous])
    rows = Rows(person)
    rows.columns["iin"] = ps.iin[person]
    rows.columns["status"] = codes(
        np.concatenate([status[current], np.full(len(previous), EMPLOYED)]), EMPLOYMENT_STATUS
    )
    rows.columns["employer_bin"] = np.concatenate([employer[current], prev_employer])
    rows.columns["start_date"] = np.concatenate([start[current], prev_start])
    rows.columns["end_date"] = np.concatenate([end[current], prev_end])
    last = np.maximum(rows.columns["start_date"], rows.columns["end_date"])
    rows.columns["updated_on"] = updated_on(rng, len(person), as_of, 7, last)
    paid = np.flatnonzero(status[current] == EMPLOYED)
    contracts = Contracts(
        person=np.concatenate([current[paid], previous]),
        employer=np.concatenate([employer[current][paid], prev_employer]),
        start=np.concatenate([start[current][paid], prev_start]),
        end=np.concatenate([end[current][paid], prev_end]),
    )
    return rows, status, employer, contracts


def _month_start(month: np.ndarray) -> np.ndarray:
    return month.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def income(
    rng: np.random.Generator,
    hh: Households,
    ps: Persons,
    months: np.ndarray,
    as_of: int,
    status: np.ndarray,
    contracts: Contracts,
    disability: np.ndarray,
    state_payer: int,
) -> tuple[Rows, np.ndarray]:
    """Monthly rows by type; also the true income per household summed over the months."""
    p = len(ps.age)
    region_code = np.array(geography().codes)[hh.region[ps.household]]
    factor = np.where(np.isin(region_code, HIGH_WAGE_REGIONS), 1.15, 1.0) * np.where(
        hh.rural[ps.household], 0.8, 1.0
    )
    wage = np.maximum(300_000_00 * factor * np.exp(rng.normal(0, 0.6, p)), MZP_TIYN)
    pension = np.clip(rng.normal(150_000_00, 35_000_00, p), 75_000_00, 350_000_00)
    self_income = 120_000_00 * np.exp(rng.normal(0, 0.7, p))
    kids = np.bincount(ps.household[ps.age < 18], minlength=len(hh.size))
    is_head = ps.relation == HEAD
    child_benefit = np.where(is_head & (kids[ps.household] >= 3), 17_000_00 * kids[ps.household], 0)
    dis_amount = np.array([100_000_00, 80_000_00, 55_000_00, 70_000_00, 0])[disability]
    m = len(months)
    # Wages: one row per contract and month it covers, paid by that contract's employer (a
    # job change mid-quarter shows the old employer's months and then the new one's).
    c_index = np.repeat(np.arange(len(contracts.person)), m)
    c_month = np.tile(months, len(contracts.person))
    covers = (contracts.start[c_index] <= _month_start(c_month + 1) - 1) & (
        (contracts.end[c_index] == NO_DATE) | (contracts.end[c_index] >= _month_start(c_month))
    )
    c_index, c_month = c_index[covers], c_month[covers]
    streams = [(0, contracts.person[c_index], c_month, wage, contracts.employer[c_index])]
    for kind, who, amount, payer in (
        (1, ps.pensioner, pension, state_payer),
        (2, child_benefit > 0, child_benefit, state_payer),
        (2, disability < len(DISABILITY_GROUPS), dis_amount, state_payer),
        (3, status == SELF_EMPLOYED, self_income, -1),
    ):
        person = np.repeat(np.flatnonzero(who), m)
        streams.append(
            (kind, person, np.tile(months, int(who.sum())), amount, np.full(len(person), payer))
        )
    parts = []
    for kind, person, month, amount, payer_of_row in streams:
        death = ps.death[person]
        alive = (death == NO_DATE) | (death >= _month_start(month))  # paid for the month of death
        noise = np.ones(len(person))
        if kind == 0:
            noise = rng.normal(1, 0.05, len(person)) * np.where(
                rng.random(len(person)) < 0.08, 1.3, 1
            )
        if kind == 3:
            alive &= rng.random(len(person)) < 0.7
        tiyn = np.round(amount[person] * noise).astype(np.int64)
        if kind == 0:
            tiyn = np.maximum(tiyn, MZP_TIYN)
        sel = np.flatnonzero(alive)
        parts.append(
            (person[sel], month[sel], np.full(len(sel), kind), tiyn[sel], payer_of_row[sel])
        )
    person = np.concatenate([x[0] for x in parts])
    order = np.lexsort(
        (np.concatenate([x[2] for x in parts]), np.concatenate([x[1] for x in parts]), person)
    )
    person = person[order]
    rows = Rows(person)
    month = np.concatenate([x[1] for x in parts])[order]
    rows.columns["iin"] = ps.iin[person]
    rows.columns["period"] = month
    rows.columns["income_type"] = codes(np.concatenate([x[2] for x in parts])[order], INCOME_TYPES)
    amount_tiyn = np.concatenate([x[3] for x in parts])[order]
    rows.columns["amount"] = amount_tiyn
    rows.columns["payer_bin"] = np.concatenate([x[4] for x in parts])[order]
    month_end = _month_start(month + 1) - 1
    rows.columns["updated_on"] = np.minimum(month_end + rng.integers(5, 21, len(person)), as_of - 1)
    total = np.bincount(ps.household[person], weights=amount_tiyn, minlength=len(hh.size))
    return rows, total.astype(np.int64)


def disability(rng: np.random.Generator, ps: Persons, as_of: int) -> tuple[Rows, np.ndarray]:
    p = len(ps.age)
    chance = 0.014 + 0.001 * np.clip(ps.age - 18, 0, None)
    person = np.flatnonzero(rng.random(p) < chance)
    k = len(person)
    age = ps.age[person]
    group = np.where(age < 18, 3, np.searchsorted([0.1, 0.5], rng.random(k), side="right"))
    assigned = as_of - (rng.random(k) * np.minimum(age, 10) * YEAR).astype(np.int64) - 1
    assigned = np.maximum(assigned, ps.birth[person] + 30)
    u = rng.random(k)
    until = np.select(
        [group == 3, u < 0.4, u < 0.9],
        [ps.birth[person] + 18 * YEAR + 4, NO_DATE, as_of + rng.integers(30, 700, k)],
        default=as_of - rng.integers(1, 300, k),
    )
    until = np.where((until != NO_DATE) & (until <= assigned), assigned + 365, until)
    current = np.full(p, 4)  # 4 = none (index past DISABILITY_GROUPS for amount lookups)
    valid = (until == NO_DATE) | (until >= as_of)
    current[person[valid]] = group[valid]
    rows = Rows(person)
    rows.columns["iin"] = ps.iin[person]
    rows.columns["disability_group"] = codes(group, DISABILITY_GROUPS)
    rows.columns["assigned_on"] = assigned
    rows.columns["valid_until"] = until
    rows.columns["updated_on"] = updated_on(rng, k, as_of, 30, assigned)
    return rows, current


# ICD-10 codes of conditions behind each disability group, and how often each is drawn.
DIAGNOSES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "1": (
        ("I69.4", "G80.0", "H54.0", "C34.9", "G12.2", "N18.5", "T91.3", "F72", "G35"),
        (0.22, 0.12, 0.12, 0.12, 0.06, 0.1, 0.08, 0.1, 0.08),
    ),
    "2": (
        ("I63.9", "E10.7", "I50.0", "F20.0", "G40.2", "M05.8", "C50.9", "H54.1", "G35", "S78.1"),
        (0.18, 0.12, 0.12, 0.12, 0.08, 0.1, 0.08, 0.08, 0.06, 0.06),
    ),
    "3": (
        ("H90.3", "M16.1", "I11.9", "E11.9", "J44.9", "M51.1", "G40.9", "F70", "Z89.5"),
        (0.14, 0.14, 0.16, 0.14, 0.1, 0.12, 0.06, 0.08, 0.06),
    ),
    "child": (
        ("G80.1", "Q90.9", "F84.0", "Q05.9", "E84.9", "H90.3", "G40.3", "Q21.1", "E10.9", "Q65.1"),
        (0.2, 0.14, 0.16, 0.06, 0.04, 0.1, 0.1, 0.06, 0.08, 0.06),
    ),
}
NO_DIAGNOSIS = 0.08


def diagnoses(rng: np.random.Generator, groups: pa.Array | np.ndarray) -> pa.Array:
    """An ICD-10 code per disability row, typical of its group; NULL for 8 % of rows."""
    if isinstance(groups, pa.Array):
        groups = groups.to_numpy(zero_copy_only=False)
    group = np.asarray(groups, dtype=object)
    codes_out = np.full(len(group), None, dtype=object)
    for name, (choices, weights) in DIAGNOSES.items():
        rows = np.flatnonzero(group == name)
        p = np.asarray(weights) / np.sum(weights)
        codes_out[rows] = np.asarray(choices, dtype=object)[
            rng.choice(len(choices), len(rows), p=p)
        ]
    codes_out[rng.random(len(group)) < NO_DIAGNOSIS] = None
    return pa.array(codes_out.tolist(), pa.string())


def _acquired(rng: np.random.Generator, ps: Persons, owner: np.ndarray, as_of: int) -> np.ndarray:
    span = np.clip(ps.age[owner] - 18, 0.1, 30) * YEAR
    return np.maximum(as_of - 1 - (rng.random(len(owner)) * span).astype(np.int64), ps.birth[owner])


def property_rows(
    rng: np.random.Generator, hh: Households, ps: Persons, as_of: int, first_object: int
) -> Rows:
    n = len(hh.size)
    head = np.flatnonzero(ps.relation == HEAD)  # one per household, in household order
    spouse = np.full(n, -1)
    sp = np.flatnonzero(ps.relation == SPOUSE)
    spouse[ps.household[sp]] = sp
    owner_alt = np.where(spouse >= 0, spouse, head)
    u = rng.random((6, n))
    rural = hh.rural
    dwelling = u[0] < np.where(rural, 0.90, 0.82)
    second = dwelling & (u[1] < 0.08)
    land = u[2] < np.where(rural, 0.60, 0.10)
    vehicle = u[3] < 0.30
    old_vehicle = vehicle & (u[4] < 0.2)
    groups = [
        (
            0,
            np.flatnonzero(dwelling),
            head,
            lambda k, h: hh.size[h] * rng.normal(21, 3, k) + rng.uniform(8, 25, k),
        ),
        (0, np.flatnonzero(second), owner_alt, lambda k, h: rng.normal(50, 15, k)),
        (
            1,
            np.flatnonzero(land),
            head,
            lambda k, h: np.where(rural[h], rng.uniform(600, 5000, k), rng.uniform(400, 1200, k)),
        ),
        (2, np.flatnonzero(vehicle), head, None),
        (2, np.flatnonzero(old_vehicle), owner_alt, None),
    ]
    parts: list[tuple[np.ndarray, ...]] = []
    area_fn: Callable[[int, np.ndarray], np.ndarray] | None
    for type_no, chosen, owner_of, area_fn in groups:  # type: ignore[assignment]
        k = len(chosen)
        area = np.full(k, -1, dtype=np.int64)
        if area_fn is not None:
            area = np.round(np.maximum(area_fn(k, chosen), 14) * 10).astype(np.int64) * 10
        parts.append((chosen, owner_of[chosen], np.full(k, type_no), area))
    households = np.concatenate([x[0] for x in parts])
    order = np.argsort(households, kind="stable")
    owner = np.concatenate([x[1] for x in parts])[order]
    kind = np.concatenate([x[2] for x in parts])[order]
    area = np.concatenate([x[3] for x in parts])[order]
    households = households[order]
    k = len(owner)
    acquired = _acquired(rng, ps, owner, as_of)
    disposed_mask = np.zeros(k, dtype=bool)
    disposed_mask[np.flatnonzero(kind == 2)] = rng.random(int((kind == 2).sum())) < 0.15
    disposed = np.where(
        disposed_mask, acquired + (rng.random(k) * (as_of - 1 - acquired)).astype(np.int64), NO_DATE
    )
    region = hh.region[households]
    elsewhere = rng.random(k) < 0.05
    region = np.where(
        elsewhere, rng.choice(len(geography().codes), k, p=geography().people_share), region
    )
    codes_arr = np.array(geography().codes, dtype=object)
    prefix = np.array(["D", "L", "V"], dtype=object)[kind] + codes_arr[region]
    serial = pa.array(np.arange(first_object, first_object + k)).cast(pa.string())
    object_id = pc.binary_join_element_wise(
        pa.array(prefix.astype(str)), pc.utf8_lpad(serial, 10, "0"), "-"
    )
    rows = Rows(owner)
    rows.columns["iin"] = ps.iin[owner]
    rows.columns["property_type"] = codes(kind, PROPERTY_TYPES)
    rows.columns["object_id"] = object_id
    rows.columns["area_m2"] = area
    rows.columns["region_code"] = codes(region, geography().codes)
    rows.columns["acquired_on"] = acquired
    rows.columns["disposed_on"] = disposed
    rows.columns["updated_on"] = updated_on(rng, k, as_of, 30, np.maximum(acquired, disposed))
    return rows


def finance(rng: np.random.Generator, ps: Persons, as_of: int, first_contract: int) -> Rows:
    adults = np.flatnonzero((ps.age >= 18) & ps.alive)
    a = len(adults)
    age = ps.age[adults]
    u = rng.random((4, a))
    mortgage_p = np.where((age >= 25) & (age < 55), 0.09, 0.01)
    picks = [
        (0, u[0] < 0.33, 650_000_00, 0.8, 5),
        (1, u[1] < mortgage_p, 14_000_000_00, 0.5, 15),
        (2, u[2] < 0.10, 90_000_00, 0.6, 1),
        (3, u[3] < 0.25, 250_000_00, 1.3, 10),
    ]
    parts = []
    for product_no, chosen, median, sigma, years in picks:
        person = adults[chosen]
        k = len(person)
        balance = np.round(median * np.exp(rng.normal(0, sigma, k))).astype(np.int64)
        span = np.minimum(np.clip(ps.age[person] - 18, 0.1, None), years) * YEAR
        opened = np.maximum(
            as_of - 30 - (rng.random(k) * span).astype(np.int64), ps.birth[person] + 18 * YEAR
        )
        closed_mask = (product_no != 3) & (rng.random(k) < 0.25)
        closed = np.where(
            closed_mask, opened + (rng.random(k) * (as_of - 1 - opened)).astype(np.int64), NO_DATE
        )
        balance = np.where(closed_mask, 0, balance)
        parts.append((person, np.full(k, product_no), balance, opened, closed))
    person = np.concatenate([x[0] for x in parts])
    order = np.argsort(person, kind="stable")
    person = person[order]
    k = len(person)
    product = np.concatenate([x[1] for x in parts])[order]
    serial = pa.array(np.arange(first_contract, first_contract + k)).cast(pa.string())
    contract = pc.binary_join_element_wise(
        pa.array(np.array(["CL", "MG", "MF", "DP"])[product]), pc.utf8_lpad(serial, 10, "0"), "-"
    )
    rows = Rows(person)
    rows.columns["iin"] = ps.iin[person]
    rows.columns["product"] = codes(product, PRODUCTS)
    rows.columns["contract_id"] = contract
    rows.columns["balance"] = np.concatenate([x[2] for x in parts])[order]
    opened = np.concatenate([x[3] for x in parts])[order]
    closed = np.concatenate([x[4] for x in parts])[order]
    rows.columns["opened_on"] = opened
    rows.columns["closed_on"] = closed
    rows.columns["updated_on"] = updated_on(rng, k, as_of, 30, np.maximum(opened, closed))
    return rows


__all__ = ["FEMALE", "MALE", "Employers", "Rows", "Truth"]
