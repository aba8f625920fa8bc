from qamqor.kit.i18n import LANGUAGES, _catalogue, explain_reason, normalise_language
from qamqor.registry.validation import REASON_CHECKS


def test_every_reason_has_a_text_in_every_language() -> None:
    for lang in LANGUAGES:
        catalogue = _catalogue(lang)
        missing = [c for c in REASON_CHECKS if f"reason.{c}" not in catalogue]
        assert not missing, (lang, missing)


def test_explanations_name_the_column() -> None:
    assert explain_reason("check_digit:iin", "ru") == "iin: неверная контрольная цифра"
    assert explain_reason("check_digit:iin", "kk") == "iin: бақылау цифры қате"
    assert explain_reason("empty_line", "en") == "the line is empty"


def test_language_negotiation_falls_back_to_english() -> None:
    assert normalise_language("kk-KZ,ru;q=0.8") == "kk"
    assert normalise_language("de-DE,fr") == "en"
    assert normalise_language(None) == "en"
