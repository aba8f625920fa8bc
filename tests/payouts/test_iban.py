"""IBAN (ISO 13616 mod 97) and BIC checks; messages never repeat the number."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qamqor.payouts.iban import (
    InvalidBicError,
    InvalidIbanError,
    mod97,
    normalise_bic,
    normalise_iban,
)

# Examples of the SWIFT IBAN registry (KZ) and the classic published DE and GB examples.
VALID = ["KZ86125KZT5004100100", "DE89370400440532013000", "GB82WEST12345698765432"]


@pytest.mark.parametrize("iban", VALID)
def test_published_examples_are_valid(iban: str) -> None:
    assert normalise_iban(iban) == iban
    assert mod97(iban) == 1


def test_paper_form_and_lower_case_are_accepted() -> None:
    assert normalise_iban(" kz86 125k zt50 0410 0100 ") == "KZ86125KZT5004100100"


@given(position=st.integers(4, 19), digit=st.integers(1, 9))
def test_any_single_digit_change_is_caught(position: int, digit: int) -> None:
    iban = "KZ86125KZT5004100100"
    if not iban[position].isdigit():
        return
    changed = iban[:position] + str((int(iban[position]) + digit) % 10) + iban[position + 1 :]
    with pytest.raises(InvalidIbanError):
        normalise_iban(changed)


@pytest.mark.parametrize(
    ("iban", "reason"),
    [
        ("KZ87125KZT5004100100", "check digits"),
        ("KZ86125KZT500410010", "20 characters"),
        ("KZ8612AKZT5004100100", "KZ shape"),
        ("XX86125KZT5004100100", "not accepted"),
        ("KZ86-125KZT5004100100", "not an IBAN"),
        ("", "not an IBAN"),
    ],
)
def test_invalid_ibans_say_why_without_repeating_the_number(iban: str, reason: str) -> None:
    with pytest.raises(InvalidIbanError, match=reason) as refused:
        normalise_iban(iban)
    assert "125KZT" not in str(refused.value)


def test_bic_shape_and_country() -> None:
    assert normalise_bic("hsbkkzkx") == "HSBKKZKX"
    assert normalise_bic("KCJBKZKXXXX", iban_country="KZ") == "KCJBKZKXXXX"
    with pytest.raises(InvalidBicError, match="country DE"):
        normalise_bic("COBADEFF", iban_country="KZ")
    for bad in ("HSBKKZK", "HSBK1ZKX", "HSBKKZKXX"):
        with pytest.raises(InvalidBicError):
            normalise_bic(bad)
