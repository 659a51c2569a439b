"""Numbers: E.164 checks, trunk normalisation, withheld callers, display and masking."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.numbers import (
    format_display,
    is_e164,
    is_withheld,
    mask,
    national_digits,
    normalise,
)

MOSCOW = "+74951110001"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+74951110001", True),
        ("+12345678", True),  # 8 digits: the shortest allowed
        ("+1234567", False),  # 7 digits
        ("+123456789012345", True),  # 15 digits: the longest allowed
        ("+1234567890123456", False),  # 16 digits
        ("+04951110001", False),  # no country code starts with 0
        ("74951110001", False),  # no "+"
        ("+7 495 111 00 01", False),
        ("+7495111000١", False),  # an Arabic-Indic digit is not a digit here
        ("", False),
        (None, False),
        (74951110001, False),
    ],
)
def test_is_e164_accepts_plus_and_8_to_15_digits_only(value: object, expected: bool) -> None:
    assert is_e164(value) is expected


@pytest.mark.parametrize(
    "raw",
    [
        "74951110001",
        "+74951110001",
        "84951110001",
        "4951110001",
        "0074951110001",
        "81074951110001",
        "+7 (495) 111-00-01",
        "8 495 111 00 01",
        "8-495-111-00-01",
        "+7.495.111.00.01",
        "(495) 111-00-01",
        "tel:+74951110001",
        "TEL:+7-495-111-00-01",
        "tel:+74951110001;phone-context=example.com",
        "  74951110001\t",
    ],
)
def test_normalise_turns_every_trunk_shape_into_e164(raw: str) -> None:
    assert normalise(raw, "7") == MOSCOW


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "s",
        "101",  # a short extension
        "1110001",  # 7 digits: a local number without its area code
        "sip:foo@bar",
        "sip:74951110001@trunk.example",
        "anonymous",
        "<unknown>",
        "unknown",
        "+7495111000١",
        "+0123456789",
        "+1234567890123456",  # 16 digits
        "00",
        "+",
        "7495111000a",
    ],
)
def test_normalise_refuses_what_is_not_a_phone_number(raw: str | None) -> None:
    assert normalise(raw, "7") is None


@pytest.mark.parametrize(
    ("raw", "country_code", "expected"),
    [
        # The 8 and 810 prefixes are Russian conventions only.
        ("84951110001", "49", "+84951110001"),
        ("81074951110001", "49", "+81074951110001"),
        # An 11-digit number starting with 8 is the Russian trunk prefix under 7.
        ("89161234567", "7", "+79161234567"),
        # 810 is the international prefix: the rest carries its own country code.
        ("810380441234567", "7", "+380441234567"),
        ("00380441234567", "7", "+380441234567"),
        # A leading single 0 is the national trunk prefix outside 7 and 1.
        ("030123456", "49", "+4930123456"),
        ("02079460000", "44", "+442079460000"),
        ("4930123456", "49", "+4930123456"),
        ("0049301234567", "49", "+49301234567"),
        # NANP national numbers are 10 digits, like Russia's.
        ("2025550123", "1", "+12025550123"),
        ("12025550123", "1", "+12025550123"),
        # A "+" number is never reinterpreted.
        ("+84951110001", "7", "+84951110001"),
    ],
)
def test_normalise_applies_prefix_rules_of_the_country(
    raw: str, country_code: str, expected: str
) -> None:
    assert normalise(raw, country_code) == expected


_phone_texts = st.text(alphabet="0123456789+-() .", max_size=20) | st.text(max_size=20)


@given(_phone_texts, st.sampled_from(["7", "1", "44", "49", "380"]))
def test_every_normalised_result_is_e164_and_normalising_again_keeps_it(
    raw: str, country_code: str
) -> None:
    result = normalise(raw, country_code)
    if result is not None:
        assert is_e164(result)
        assert normalise(result, country_code) == result


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True), st.sampled_from(["7", "1", "44"]))
def test_normalise_keeps_e164_input_as_it_is(e164: str, country_code: str) -> None:
    assert normalise(e164, country_code) == e164


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, True),
        ("", True),
        ("   ", True),
        ("anonymous", True),
        ("Anonymous", True),
        ("<unknown>", True),
        ("unknown", True),
        ("UNKNOWN", True),
        ('"" <>', True),
        ("<>", True),
        ('"Anonymous" <anonymous>', True),
        ("restricted", True),
        ("private", True),
        ("Withheld", True),
        ("sip:anonymous@anonymous.invalid", True),
        ("74951110001", False),
        ("+74951110001", False),
        ('"Ivan" <74951110001>', False),
        ("s", False),
        ("101", False),
    ],
)
def test_is_withheld_recognises_every_spelling_of_no_caller(
    raw: str | None, expected: bool
) -> None:
    assert is_withheld(raw) is expected


@pytest.mark.parametrize(
    ("e164", "country_code", "expected"),
    [
        ("+74951110001", "7", "4951110001"),
        ("+442079460000", "44", "2079460000"),
        ("+442079460000", "7", "442079460000"),  # another country: all digits
        ("+74951110001", "", "74951110001"),
    ],
)
def test_national_digits_drops_only_the_own_country_code(
    e164: str, country_code: str, expected: str
) -> None:
    assert national_digits(e164, country_code) == expected


@pytest.mark.parametrize(
    ("e164", "display_format", "country_code", "expected"),
    [
        ("+74951110001", "+7 (XXX) XXX-XX-XX", "7", "+7 (495) 111-00-01"),
        ("+74951110001", "8 XXX XXX XX XX", "7", "8 495 111 00 01"),
        ("+74951110001", "XXXXXXXXXX", "7", "4951110001"),
        # Counts differ: one X too many, one too few -> the E.164 form.
        ("+74951110001", "+7 (XXX) XXX-XX-XXX", "7", "+74951110001"),
        ("+74951110001", "+7 (XXX) XXX-XX-X", "7", "+74951110001"),
        ("+74951110001", "no placeholders", "7", "+74951110001"),
        # A foreign number with as many digits as X's would lie under "+7": E.164 instead.
        ("+1234567890", "+7 (XXX) XXX-XX-XX", "7", "+1234567890"),
        # Lower-case x is text, not a placeholder.
        ("+74951110001", "+7 (xXXX) XXX-XX-XX", "7", "+7 (x495) 111-00-01"),
    ],
)
def test_format_display_fills_the_xs_or_falls_back_to_e164(
    e164: str, display_format: str, country_code: str, expected: str
) -> None:
    assert format_display(e164, display_format, country_code) == expected


@given(
    st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True),
    st.text(max_size=40),
    st.sampled_from(["7", "1", "44", "380"]),
)
def test_format_display_never_raises_and_keeps_every_digit(
    e164: str, display_format: str, country_code: str
) -> None:
    shown = format_display(e164, display_format, country_code)
    if shown != e164:
        national = national_digits(e164, country_code)
        filled = [shown[i] for i, ch in enumerate(display_format) if ch == "X"]
        assert "".join(filled) == national
        assert len(shown) == len(display_format)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+74951110001", "+7495***0001"),
        ("+442079460000", "+4420***0000"),
        ("+12345678", "+12***678"),
        ("1234", "***"),
        (None, "(none)"),
    ],
)
def test_mask_hides_the_middle_of_a_number(value: str | None, expected: str) -> None:
    assert mask(value) == expected


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_mask_never_shows_a_number_in_full(e164: str) -> None:
    masked = mask(e164)
    assert e164 not in masked
    assert len(masked.replace("***", "")) <= len(e164) - 3
