"""Analytics ids from cookies: the GA client id, the GA4 session id, Metrika's ClientID."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.analytics_ids import ga_client_id, ga_session_id, ym_client_id

GS1 = "GS1.1.1700000000.3.1.1700000100.0.0.0"
GS2 = "GS2.1.s1700000000$o3$g1$t1700000100$j60$l0$h0"


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ("GA1.1.1234567890.1700000000", "1234567890.1700000000"),
        ("GA1.2.1234567890.1700000000", "1234567890.1700000000"),
        ("GA1.3.987.654", "987.654"),
        ("  GA1.1.1234567890.1700000000 ", "1234567890.1700000000"),
        ("1234567890.1700000000", "1234567890.1700000000"),  # already parsed by the page
        ("GA1.1.abc.1700000000", None),
        ("GA1.1.1234567890", None),
        ("GA1.1.1234567890.1700000000.5", None),
        ("GA2.1.1234567890.1700000000", None),
        ("GS1.1.1700000000.3", None),
        ("GA1.1.١٢٣.456", None),  # non-ASCII digits
        ("", None),
        (None, None),
        (1234, None),
    ],
)
def test_ga_client_id_is_x_dot_y_from_the_ga_cookie(cookie: object, expected: str | None) -> None:
    assert ga_client_id(cookie) == expected  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**10))
def test_ga_client_id_round_trips_any_numeric_pair(x: int, y: int) -> None:
    assert ga_client_id(f"GA1.1.{x}.{y}") == f"{x}.{y}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (GS1, "1700000000"),
        ("GS1.2.1700000000.3", "1700000000"),
        ("GS1.1.1700000000", "1700000000"),
        (GS2, "1700000000"),
        # The 2025 format's parts are keyed by their first letter, in no fixed order.
        ("GS2.1.o3$g1$s1700000000$t1700000100", "1700000000"),
        ("GS2.1.s1700000000", "1700000000"),
        ("GS2.1.o3$g1$t1700000100", None),  # no session part
        ("GS2.1.sabc$o3", None),
        ("GS2.1.s$o3", None),
        ("GS1.1.abc.3", None),
        ("GS3.1.s1700000000", None),
        ("GA1.1.1234567890.1700000000", None),  # a _ga value, not a session
        ("", None),
    ],
)
def test_ga_session_id_reads_both_cookie_formats(value: str, expected: str | None) -> None:
    assert ga_session_id({"_ga_ABC123": value}, "G-ABC123") == expected


@pytest.mark.parametrize(
    ("cookies", "measurement_id", "expected"),
    [
        # The measurement id picks its own property's cookie.
        ({"_ga_OTHER": "GS1.1.111.1", "_ga_ABC123": "GS1.1.222.1"}, "G-ABC123", "222"),
        ({"_ga_OTHER": "GS1.1.111.1", "_ga_ABC123": "GS1.1.222.1"}, "ABC123", "222"),
        ({"_ga_abc123": "GS1.1.222.1"}, "g-abc123", "222"),
        # Another property's session is never taken instead.
        ({"_ga_OTHER": "GS1.1.111.1"}, "G-ABC123", None),
        ({"_ga_OTHER": "GS1.1.111.1", "_ga_ABC123": "garbage"}, "G-ABC123", None),
        # Without a measurement id: the first cookie that parses.
        ({"_ga_A": "garbage", "_ga_B": GS2, "_ga_C": "GS1.1.333.1"}, None, "1700000000"),
        ({"_ga_A": "GS1.1.333.1", "_ga_B": GS2}, "", "333"),
        ({"_ga": "GA1.1.1.2", "other": GS1}, None, None),
        ({}, None, None),
        (None, None, None),
        (None, "G-ABC123", None),
        ({"_ga_A": 42}, None, None),
    ],
)
def test_ga_session_id_takes_the_cookie_of_the_measurement_id(
    cookies: object, measurement_id: str | None, expected: str | None
) -> None:
    assert ga_session_id(cookies, measurement_id) == expected  # type: ignore[arg-type]


@given(
    st.integers(min_value=1, max_value=10**10),
    st.permutations(["o3", "g1", "t1700000100", "j60", "l0", "h0"]),
    st.integers(min_value=0, max_value=6),
)
def test_gs2_session_is_found_wherever_its_part_sits(
    session: int, others: list[str], position: int
) -> None:
    parts = [*others[:position], f"s{session}", *others[position:]]
    cookie = "GS2.1." + "$".join(parts)
    assert ga_session_id({"_ga_X": cookie}, "G-X") == str(session)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000123456789", "1700000000123456789"),
        (" 1700000000123456789 ", "1700000000123456789"),
        ("1", "1"),
        ("1" * 30, "1" * 30),
        ("1" * 31, None),
        ("0123", None),
        ("17000000001234a", None),
        ("-1", None),
        ("1.5", None),
        ("١٢٣", None),
        ("", None),
        (None, None),
    ],
)
def test_ym_client_id_is_a_positive_number_of_up_to_30_digits(
    value: str | None, expected: str | None
) -> None:
    assert ym_client_id(value) == expected


@given(st.text(max_size=60))
def test_cookie_parsers_never_raise_and_give_digits(value: str) -> None:
    for result in (
        ym_client_id(value),
        ga_session_id({"_ga_X": value}, None),
        ga_session_id({"_ga_X": value}, "G-X"),
    ):
        assert result is None or (result.isascii() and result.isdigit())
    client = ga_client_id(value)
    assert client is None or client.replace(".", "", 1).isdigit()
