"""ИИН/БИН (IIN/BIN): the 12-digit individual and business identification numbers of Kazakhstan.

IIN layout: ``YYMMDD`` birth date, one century/sex digit (1/2 = 19th century man/woman,
3/4 = 20th, 5/6 = 21st), four serial digits and a check digit. The check digit is the sum of
the first eleven digits weighted 1..11, modulo 11; if that gives 10, the sum is taken again
with weights 3..11, 1, 2, and if that too gives 10 the number is never issued. A BIN uses the
same check digit. Since 2013 an IIN need not encode the true birth date, so a mismatch with the
registry's birth date is informational only.

The vectorised twin of ``check_digit`` is ``iin_valid_sql`` (DuckDB SQL); tests hold them equal.
"""

from __future__ import annotations

import datetime as dt

FIRST_WEIGHTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
SECOND_WEIGHTS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)

# century/sex digit -> (first year of the century, sex)
CENTURY_SEX = {
    1: (1800, "M"),
    2: (1800, "F"),
    3: (1900, "M"),
    4: (1900, "F"),
    5: (2000, "M"),
    6: (2000, "F"),
}


def check_digit(first11: str) -> int | None:
    """The check digit for eleven digits, or None when such a number is never issued."""
    if len(first11) != 11 or not first11.isdigit():
        raise ValueError("need exactly eleven digits")
    digits = [ord(c) - 48 for c in first11]
    total = sum(w * d for w, d in zip(FIRST_WEIGHTS, digits, strict=True)) % 11
    if total == 10:
        total = sum(w * d for w, d in zip(SECOND_WEIGHTS, digits, strict=True)) % 11
        if total == 10:
            return None
    return total


def is_valid(number: str) -> bool:
    """True when ``number`` is twelve digits with a correct check digit (IIN or BIN)."""
    if len(number) != 12 or not number.isdigit():
        return False
    expected = check_digit(number[:11])
    return expected is not None and expected == ord(number[11]) - 48


def make_iin(birth_date: dt.date, sex: str, serial: int) -> str | None:
    """Build an IIN, or None when this serial gives an unissuable number (skip to the next)."""
    century = (birth_date.year // 100) * 100
    digit = next((d for d, (c, s) in CENTURY_SEX.items() if c == century and s == sex), None)
    if digit is None:
        raise ValueError(f"no century/sex digit for {birth_date.year} {sex}")
    if not 0 <= serial <= 9999:
        raise ValueError("serial must be 0..9999")
    first11 = f"{birth_date:%y%m%d}{digit}{serial:04d}"
    check = check_digit(first11)
    return None if check is None else first11 + str(check)


def birth_date_and_sex(iin: str) -> tuple[dt.date, str] | None:
    """The birth date and sex an IIN encodes, or None when it encodes none (foreigners, errors)."""
    if len(iin) != 12 or not iin.isdigit():
        return None
    century_sex = CENTURY_SEX.get(int(iin[6]))
    if century_sex is None:
        return None
    century, sex = century_sex
    try:
        born = dt.date(century + int(iin[0:2]), int(iin[2:4]), int(iin[4:6]))
    except ValueError:
        return None
    return born, sex


def iin_sums_sql(column: str, number: str | None = None) -> tuple[str, str, str]:
    """DuckDB expressions for the first and second weighted sums (mod 11) and the last digit.

    The digits come from integer arithmetic on the number, 3x faster in DuckDB than slicing the
    string digit by digit (0.04 s against 0.12 s per weighted sum over 540,000 rows). A value
    that is not a number gives NULLs. ``number``: a column already holding
    ``TRY_CAST(column AS BIGINT)`` (cast once, not in each of the 34 terms).
    """
    number = number or f"TRY_CAST({column} AS BIGINT)"

    def weighted(weights: tuple[int, ...]) -> str:
        terms = " + ".join(
            f"{w} * (({number} // {10 ** (11 - i)}) % 10)" for i, w in enumerate(weights)
        )
        return f"(({terms}) % 11)"

    return weighted(FIRST_WEIGHTS), weighted(SECOND_WEIGHTS), f"({number} % 10)"


def iin_check_sql(first: str, second: str, last: str) -> str:
    """Validity from the parts ``iin_sums_sql`` gives (pass columns already holding them, so
    DuckDB computes each once: it does not share sub-expressions between CASE branches)."""
    return (
        f"CASE WHEN {first} <> 10 THEN {first} = {last} "
        f"ELSE {second} <> 10 AND {second} = {last} END"
    )


def iin_valid_sql(column: str) -> str:
    """A DuckDB boolean expression: ``column`` is a valid 12-digit IIN/BIN (NULL stays NULL)."""
    return (
        f"(regexp_full_match({column}, '[0-9]{{12}}') AND {iin_check_sql(*iin_sums_sql(column))})"
    )
