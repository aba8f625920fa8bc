import datetime as dt

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from qamqor.registry import iin

# Published examples: kz-iin-validator's README ("061211600012") and py-kz-validators'
# README ("791028302728") both give these as valid IINs.
PUBLISHED_VALID = ["061211600012", "791028302728"]


def test_published_iins_are_valid() -> None:
    for number in PUBLISHED_VALID:
        assert iin.is_valid(number), number


def test_any_other_check_digit_is_invalid() -> None:
    for number in PUBLISHED_VALID:
        for digit in "0123456789":
            if digit != number[-1]:
                assert not iin.is_valid(number[:11] + digit)


def test_malformed_numbers_are_invalid() -> None:
    for number in ["", "06121160001", "0612116000120", "06121160001a", " 61211600012"]:
        assert not iin.is_valid(number)


def test_second_weights_apply_when_the_first_sum_gives_ten() -> None:
    # Find eleven digits whose first weighted sum is 10 mod 11 and check the second pass.
    first11 = next(
        f"{n:011d}"
        for n in range(10**10, 10**10 + 10**5)
        if sum(w * int(d) for w, d in zip(iin.FIRST_WEIGHTS, f"{n:011d}", strict=True)) % 11 == 10
    )
    second = sum(w * int(d) for w, d in zip(iin.SECOND_WEIGHTS, first11, strict=True)) % 11
    assert iin.check_digit(first11) == (None if second == 10 else second)


def test_numbers_with_ten_twice_are_never_issued() -> None:
    unissuable = [
        f"{n:011d}" for n in range(10**10, 10**10 + 20000) if iin.check_digit(f"{n:011d}") is None
    ]
    assert unissuable, "the scheme leaves some numbers unissued"
    for first11 in unissuable[:50]:
        assert not any(iin.is_valid(first11 + d) for d in "0123456789")


def test_make_iin_encodes_birth_date_and_sex() -> None:
    number = iin.make_iin(dt.date(2006, 12, 11), "F", 1)
    assert number == "061211600012"
    assert iin.birth_date_and_sex(number) == (dt.date(2006, 12, 11), "F")
    assert iin.birth_date_and_sex("791028302728") == (dt.date(1979, 10, 28), "M")
    assert iin.birth_date_and_sex("791328302728") is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_sql_twin_agrees_with_python(number: str) -> None:
    con = duckdb.connect()
    sql_says = con.execute(f"SELECT {iin.iin_valid_sql('$1')}", [number]).fetchone()
    assert sql_says is not None
    assert bool(sql_says[0]) == iin.is_valid(number)


def test_sql_twin_on_published_numbers() -> None:
    con = duckdb.connect()
    for number in PUBLISHED_VALID:
        assert con.execute(f"SELECT {iin.iin_valid_sql('$1')}", [number]).fetchone() == (True,)
