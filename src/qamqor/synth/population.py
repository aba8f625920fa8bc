"""Households and the people in them: the ground truth every registry extract is derived from.

Sources and assumptions (rounded; good enough for a test population, not for statistics):

- Regions: residents by region from ``registry/regions.yaml`` (Bureau of National Statistics,
  start of 2025), used as shares of the national total (20,495,975 on 1 January 2026). The
  oblasts' urban shares are scaled by one factor so the national urban share is 63.6 %; the three
  cities are wholly urban.
- Household size: the 2021 census gives a national mean of about 3.3 (6.2 M households for
  20.5 M people), around 3 in towns and 4 in villages. Region and settlement are drawn per
  *household* with weights pop x share / mean size, so the *people* land in the published shares.
- Composition (census household types, simplified): single adults, single pensioners, couples
  without children (young or empty-nest), couples with children, single parents (mostly
  mothers) and three-generation households, either a young couple with the head's parents or an
  older couple with a married son, his wife (relation ``other``, the келін) and grandchildren.
  Villages have more children per family and more three-generation households.
- Age: parents about 23 years older than their first child, children spaced ~3 years. Measured
  on 100,000 households this gives about 35 % under 18 and 10.4 % aged 63+, against roughly
  30 % and 12 % in Kazakhstan: a little too young, a known gap.
- Deaths: a Gompertz hazard (0.017 % x e^(0.075 age), plus infant mortality) gives ~0.6-0.7 % of
  people dying in the year before ``as_of``; they stay in the truth with a death date.
- ИИН: birth date, century/sex digit and a serial per (birth date, sex), allocated in order over
  the whole run from a small counter array, skipping serials that give unissuable numbers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from qamqor.registry import catalogue
from qamqor.synth import names

URBAN_MEAN_SIZE = 3.0
RURAL_MEAN_SIZE = 4.0
PENSION_AGE = (63.0, 61.0)  # men, women (women's age is rising to 63 by 2028; kept fixed)

COMPOSITIONS = (
    "single_adult",
    "single_pensioner",
    "couple_no_children",
    "couple_with_children",
    "single_parent",
    "three_generations",
)
# per settlement (urban, rural): share of households of each composition above
COMPOSITION_SHARES = np.array(
    [
        [0.12, 0.12, 0.17, 0.35, 0.09, 0.15],
        [0.05, 0.09, 0.12, 0.41, 0.07, 0.26],
    ]
)
CHILDREN_EXTRA = (0.85, 1.55)  # children per family = 1 + Poisson(this), urban / rural

RELATIONS = ("head", "spouse", "child", "parent", "grandchild", "sibling", "other")
HEAD, SPOUSE, CHILD, PARENT, GRANDCHILD, SIBLING, OTHER = range(7)
MALE, FEMALE = 0, 1

EPOCH = np.datetime64("1970-01-01", "D")
IIN_DAY0 = int((np.datetime64("1900-01-01", "D") - EPOCH).astype(np.int64))
IIN_DAYS = 201 * 366
W1 = np.arange(1, 12, dtype=np.int64)
W2 = np.array([3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2], dtype=np.int64)


def day_number(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


@dataclass(frozen=True)
class Geography:
    codes: tuple[str, ...]
    household_share: np.ndarray  # probability a household is in each region
    urban_household: np.ndarray  # probability a household of the region is urban
    urban_people: np.ndarray  # the rescaled urban share of people per region
    people_share: np.ndarray


@lru_cache(maxsize=1)
def geography() -> Geography:
    regions = catalogue.regions()
    national = catalogue.national()
    pop = np.array([r.population for r in regions], dtype=np.float64)
    urban = np.array([r.urban for r in regions])
    city = np.array([r.kind == "city" for r in regions])
    target = float(national["urban_share"]) * pop.sum()
    factor = (target - pop[city].sum()) / (pop[~city] * urban[~city]).sum()
    urban = np.where(city, 1.0, np.minimum(urban * factor, 1.0))
    per_person = urban / URBAN_MEAN_SIZE + (1 - urban) / RURAL_MEAN_SIZE
    households = pop * per_person
    return Geography(
        codes=tuple(r.code for r in regions),
        household_share=households / households.sum(),
        urban_household=(urban / URBAN_MEAN_SIZE) / per_person,
        urban_people=urban,
        people_share=pop / pop.sum(),
    )


@dataclass
class Households:
    household_no: np.ndarray  # global number, 1-based: household_id = HH%010d
    region: np.ndarray  # index into geography().codes
    rural: np.ndarray  # bool
    composition: np.ndarray  # index into COMPOSITIONS
    group: np.ndarray  # ethnic group, index into names.ETHNIC_GROUPS
    size: np.ndarray


@dataclass
class Persons:
    household: np.ndarray  # local index into the chunk's households
    relation: np.ndarray
    sex: np.ndarray
    age: np.ndarray  # fractional years at as_of
    birth: np.ndarray  # days since 1970-01-01
    death: np.ndarray  # days since 1970-01-01, or -1 << 40 when alive
    iin: np.ndarray  # int64
    last_name: pa.Array
    first_name: pa.Array
    patronymic: pa.Array

    @property
    def alive(self) -> np.ndarray:
        return self.death == NO_DATE

    @property
    def pensioner(self) -> np.ndarray:
        return self.age >= np.where(self.sex == MALE, PENSION_AGE[0], PENSION_AGE[1])


NO_DATE = np.int64(-(1 << 40))


class SerialCounter:
    """Next free IIN serial per (birth date, sex): 147 k int16 counters for the whole country."""

    def __init__(self) -> None:
        self.next = np.zeros(IIN_DAYS * 2, dtype=np.int32)

    def allocate(self, birth: np.ndarray, sex: np.ndarray) -> np.ndarray:
        """IINs for people born on ``birth`` (days since 1970) with ``sex``; unique across calls."""
        b = birth.astype("datetime64[D]")
        year = b.astype("datetime64[Y]").astype(np.int64) + 1970
        month = (b.astype("datetime64[M]") - b.astype("datetime64[Y]")).astype(np.int64) + 1
        day = (b - b.astype("datetime64[M]")).astype(np.int64) + 1
        century = np.where(year >= 2000, 5, 3) + sex
        prefix = (year % 100) * 100_000_000 + month * 1_000_000 + day * 10_000 + century * 1000
        key = (birth - IIN_DAY0) * 2 + sex
        iin = np.full(len(birth), -1, dtype=np.int64)
        todo = np.arange(len(birth))
        while len(todo):
            serial = self._take(key[todo])
            if serial.max(initial=0) > 9999:
                raise OverflowError("more than 10,000 people share a birth date and sex")
            first11 = prefix[todo] * 10 + serial  # prefix holds YYMMDD and the century digit
            check, issuable = check_digits(first11)
            iin[todo[issuable]] = first11[issuable] * 10 + check[issuable]
            todo = todo[~issuable]
        return iin

    def _take(self, key: np.ndarray) -> np.ndarray:
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        counts = np.diff(np.r_[starts, len(key)])
        rank = np.arange(len(key)) - np.repeat(starts, counts)
        serial = np.empty(len(key), dtype=np.int64)
        serial[order] = self.next[sorted_key] + rank
        self.next[sorted_key[starts]] += counts.astype(np.int32)
        return serial


def digits(number: np.ndarray, width: int) -> np.ndarray:
    out = np.empty((len(number), width), dtype=np.int64)
    rest = number.copy()
    for i in range(width - 1, -1, -1):
        out[:, i] = rest % 10
        rest //= 10
    return out


def check_digits(first11: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vectorised ``iin.check_digit``: (check digit, issuable) for 11-digit integers."""
    d = digits(first11, 11)
    s1 = (d @ W1) % 11
    s2 = (d @ W2) % 11
    check = np.where(s1 == 10, s2, s1)
    return check, check != 10


def make_households(rng: np.random.Generator, first_no: int, n: int) -> Households:
    geo = geography()
    region = rng.choice(len(geo.codes), size=n, p=geo.household_share)
    rural = rng.random(n) >= geo.urban_household[region]
    cumulative = np.cumsum(COMPOSITION_SHARES, axis=1)
    composition = (rng.random(n)[:, None] > cumulative[rural.astype(int)]).sum(axis=1)
    group = rng.choice(len(names.ETHNIC_GROUPS), size=n, p=names.tables().group_shares)
    return Households(
        household_no=np.arange(first_no, first_no + n, dtype=np.int64),
        region=region,
        rural=rural,
        composition=np.minimum(composition, len(COMPOSITIONS) - 1),
        group=group,
        size=np.zeros(n, dtype=np.int64),
    )


def _sex(rng: np.random.Generator, n: int, p_female: float | np.ndarray) -> np.ndarray:
    return (rng.random(n) < p_female).astype(np.int64)


def make_persons(
    rng: np.random.Generator, hh: Households, as_of: int, counter: SerialCounter
) -> Persons:
    n = len(hh.region)
    comp = hh.composition
    u = rng.random((6, n))
    variant_b = (comp == 5) & (u[0] < 0.5)  # old couple + married son + grandchildren
    head_age = np.select(
        [comp == 0, comp == 1, comp == 2, comp == 3, comp == 4, variant_b],
        [
            19 + 40 * u[1] ** 1.5,
            63 + 28 * u[1] ** 1.4,
            np.where(u[2] < 0.4, 21 + 12 * u[1], 52 + 33 * u[1] ** 1.2),
            np.clip(rng.normal(37, 7, n), 22, 60),
            np.clip(rng.normal(36, 7, n), 20, 58),
            52 + 22 * u[1],
        ],
        default=np.clip(rng.normal(35, 6, n), 22, 55),
    )
    p_head_female = np.select(
        [comp == 0, comp == 1, comp == 4, variant_b], [0.5, 0.7, 0.85, 0.25], default=0.15
    )
    head_sex = _sex(rng, n, p_head_female)
    single_pensioner = comp == 1
    head_age = np.where(single_pensioner & (head_sex == MALE), np.maximum(head_age, 63), head_age)

    has_spouse = np.isin(comp, (2, 3, 5)) & ~(variant_b & (u[3] < 0.2))
    extra = np.where(hh.rural, CHILDREN_EXTRA[1], CHILDREN_EXTRA[0])
    kids = np.where(np.isin(comp, (3, 4, 5)), 1 + np.minimum(rng.poisson(extra), 7), 0)
    n_parents = np.where((comp == 5) & ~variant_b, 1 + (u[4] < 0.4), 0)
    n_son = variant_b.astype(np.int64)
    n_inlaw = (variant_b & (u[4] < 0.75)).astype(np.int64)
    n_sibling = ((comp == 0) & (u[5] < 0.2)).astype(np.int64)
    n_child = np.where(variant_b, 0, kids)
    n_grandchild = np.where(variant_b, kids, 0)

    son_age = np.clip(head_age - 26 + rng.normal(0, 3, n), 20, None)
    blocks: list[tuple[np.ndarray, ...]] = []

    def block(rel: int, count: np.ndarray, age: np.ndarray, sex: np.ndarray) -> None:
        idx = np.repeat(np.arange(n), count)
        blocks.append((idx, np.full(len(idx), rel), age, sex))

    block(HEAD, np.ones(n, dtype=np.int64), head_age, head_sex)
    spouse_idx = np.repeat(np.arange(n), has_spouse)
    block(
        SPOUSE,
        has_spouse.astype(np.int64),
        np.maximum(head_age[spouse_idx] - rng.normal(3, 3, len(spouse_idx)), 18),
        1 - head_sex[spouse_idx],
    )
    for rel, count, parent_age in ((CHILD, n_child, head_age), (GRANDCHILD, n_grandchild, son_age)):
        idx = np.repeat(np.arange(n), count)
        order = np.arange(len(idx)) - np.repeat(np.cumsum(count) - count, count)
        age = parent_age[idx] - 23 - 3 * order - 4 * rng.random(len(idx))
        age = np.where(age < 0, rng.random(len(idx)) * 2, age)
        block(rel, count, age, _sex(rng, len(idx), 0.486))
    son_idx = np.repeat(np.arange(n), n_son)
    block(CHILD, n_son, son_age[son_idx], _sex(rng, len(son_idx), 0.4))
    inlaw_idx = np.repeat(np.arange(n), n_inlaw)
    son_sex_of = np.zeros(n, dtype=np.int64)
    son_sex_of[son_idx] = blocks[-1][3]
    block(
        OTHER,
        n_inlaw,
        np.maximum(son_age[inlaw_idx] + rng.normal(-2, 2, len(inlaw_idx)), 18),
        1 - son_sex_of[inlaw_idx],
    )
    parent_idx = np.repeat(np.arange(n), n_parents)
    parent_order = np.arange(len(parent_idx)) - np.repeat(
        np.cumsum(n_parents) - n_parents, n_parents
    )
    block(
        PARENT,
        n_parents,
        np.minimum(head_age[parent_idx] + 27 + rng.normal(0, 3, len(parent_idx)), 97),
        np.where(n_parents[parent_idx] == 2, parent_order, _sex(rng, len(parent_idx), 0.7)),
    )
    sib_idx = np.repeat(np.arange(n), n_sibling)
    block(
        SIBLING,
        n_sibling,
        np.maximum(head_age[sib_idx] + rng.normal(0, 4, len(sib_idx)), 18),
        _sex(rng, len(sib_idx), 0.5),
    )

    household = np.concatenate([b[0] for b in blocks])
    relation = np.concatenate([b[1] for b in blocks])
    age = np.concatenate([b[2] for b in blocks]).astype(np.float64)
    sex = np.concatenate([b[3] for b in blocks]).astype(np.int64)
    order = np.lexsort((relation, household))  # stable within a relation: block order kept
    household, relation, age, sex = household[order], relation[order], age[order], sex[order]
    hh.size = np.bincount(household, minlength=n)

    # Ages clamped above (pension age 63, adult 18, 97 at most) would put everyone clamped on
    # one birth date and exhaust its 10,000 IIN serials at national scale: keep the whole
    # years and spread the birthday over the year.
    age = np.floor(age) + rng.random(len(age))
    birth = as_of - np.floor(age * 365.2425).astype(np.int64) - 1
    hazard = 0.00017 * np.exp(0.075 * age) + np.where(age < 1, 0.008, 0.0)
    dies = rng.random(len(age)) < hazard
    infant = age < 1
    death = np.where(
        infant,
        birth + 1 + np.floor((as_of - 1 - birth) * rng.random(len(age))).astype(np.int64),
        as_of - rng.integers(1, 366, len(age)),
    )
    death = np.where(dies, np.maximum(death, birth + 1), NO_DATE)
    iin = counter.allocate(birth, sex)
    last, first, patronymic = _names(rng, hh, household, relation, sex)
    return Persons(household, relation, sex, age, birth, death, iin, last, first, patronymic)


def _names(
    rng: np.random.Generator,
    hh: Households,
    household: np.ndarray,
    relation: np.ndarray,
    sex: np.ndarray,
) -> tuple[pa.Array, pa.Array, pa.Array]:
    t = names.tables()
    p = len(household)
    group = hh.group[household]
    surname = names.pick(t.surname_span, hh.group, rng.random(len(hh.group)))[household]
    own = (relation == SPOUSE) & (rng.random(p) < 0.2)  # kept her own surname
    surname = np.where(own, names.pick(t.surname_span, group, rng.random(p)), surname)
    n_surnames = len(t.surname_m)
    last = pa.concat_arrays([t.surname_m, t.surname_f]).take(pa.array(surname + sex * n_surnames))

    male = names.pick(t.first_m_span, group, rng.random(p))
    female = names.pick(t.first_f_span, group, rng.random(p))
    n_male = len(t.first_m)
    first_idx = np.where(sex == MALE, male, n_male + female)
    first = pa.concat_arrays([t.first_m, t.first_f]).take(pa.array(first_idx))

    # children of a male head carry his name; everyone else a father's name from their group
    head_pos = np.flatnonzero(relation == HEAD)
    head_male_name = np.full(len(hh.group), -1, dtype=np.int64)
    head_male_name[household[head_pos]] = np.where(sex[head_pos] == MALE, first_idx[head_pos], -1)
    father = names.pick(t.first_m_span, group, rng.random(p))
    from_head = (relation == CHILD) & (head_male_name[household] >= 0)
    father = np.where(from_head, head_male_name[household], father)
    style_u = rng.random(len(hh.group))[household]
    kazakh = group == 0
    style = np.where(  # 0 Russian form, 1 Kazakh form, 2 none
        kazakh,
        np.where(style_u < 0.35, 1, np.where(style_u < 0.9, 0, 2)),
        np.where(style_u < 0.85, 0, 2),
    )
    pat_idx = father + n_male * (2 * (style == 1) + sex)
    pool = pa.concat_arrays(
        [t.patronymic_ru_m, t.patronymic_ru_f, t.patronymic_kk_m, t.patronymic_kk_f]
    )
    patronymic = pool.take(pa.array(pat_idx, mask=style == 2))
    return last, first, patronymic
