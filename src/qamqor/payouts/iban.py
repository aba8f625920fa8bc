"""IBAN (ISO 13616) and BIC (ISO 9362) checks.

An IBAN is a country code, two check digits and the country's BBAN; it is valid when, moved
four characters to the end and with letters read as numbers (A = 10 ... Z = 35), it leaves
1 modulo 97 (ISO 7064 MOD 97-10). Lengths per country follow the SWIFT IBAN registry; a
Kazakh IBAN is 20 characters: KZ, check digits, a 3-digit bank code and a 13-character account
(example from the registry: KZ86 125K ZT50 0410 0100).

Error messages never repeat the number: an IBAN is personal data.
"""

from __future__ import annotations

import re

from qamqor.kit.errors import QamqorError

# Countries whose accounts can receive payments, with their IBAN length (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "KZ": 20,
    "AZ": 28,
    "BY": 28,
    "DE": 22,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "TR": 26,
    "UA": 29,
}
# BBAN shape where it is narrower than "letters and digits": KZ is 3 digits then 13 alphanumerics.
BBAN_PATTERNS = {"KZ": re.compile(r"[0-9]{3}[0-9A-Z]{13}")}
IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[0-9A-Z]{11,30}")
BIC_SHAPE = re.compile(r"[A-Z]{4}([A-Z]{2})[0-9A-Z]{2}([0-9A-Z]{3})?")


class InvalidIbanError(QamqorError):
    code = "invalid_iban"


class InvalidBicError(QamqorError):
    code = "invalid_bic"


def mod97(iban: str) -> int:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97


def normalise_iban(text: str) -> str:
    """The IBAN in electronic form (no spaces, capitals), or InvalidIbanError saying why."""
    iban = "".join(text.split()).upper()
    if not IBAN_SHAPE.fullmatch(iban):
        raise InvalidIbanError(
            "not an IBAN: a country code, two check digits and 11-30 letters or digits"
        )
    country = iban[:2]
    length = IBAN_LENGTHS.get(country)
    if length is None:
        raise InvalidIbanError(
            f"IBANs of {country} are not accepted (accepted: {', '.join(sorted(IBAN_LENGTHS))})"
        )
    if len(iban) != length:
        raise InvalidIbanError(f"a {country} IBAN has {length} characters, this one {len(iban)}")
    pattern = BBAN_PATTERNS.get(country)
    if pattern is not None and not pattern.fullmatch(iban[4:]):
        raise InvalidIbanError(f"the account part does not have the {country} shape")
    if mod97(iban) != 1:
        raise InvalidIbanError("the IBAN's check digits do not match (ISO 13616 mod 97)")
    return iban


def normalise_bic(text: str, iban_country: str | None = None) -> str:
    """An 8- or 11-character BIC in capitals, of the IBAN's country when one is given."""
    bic = text.strip().upper()
    match = BIC_SHAPE.fullmatch(bic)
    if match is None:
        raise InvalidBicError("not a BIC: 4 letters (bank), 2 (country), 2 and optionally 3 more")
    if iban_country is not None and match.group(1) != iban_country:
        raise InvalidBicError(f"the BIC is of country {match.group(1)}, the IBAN of {iban_country}")
    return bic
