"""The traffic file parser: strict, one-line errors naming the row, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.simulate.traffic import (
    HEADER,
    TrafficError,
    VisitRow,
    format_traffic,
    parse_traffic,
)

HEAD = ",".join(HEADER)


def test_a_good_file_gives_one_row_per_visit() -> None:
    text = (
        HEAD
        + "\nv1,0,60,30,https://shop.example/?gclid=1,https://google.com/,45\nv1,100,200,150,,,\n"
    )
    rows = parse_traffic(text)
    assert rows == [
        VisitRow("v1", 0, 60, 30, "https://shop.example/?gclid=1", "https://google.com/", 45),
        VisitRow("v1", 100, 200, 150, "", "", None),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("v,0,10,5,,,\nv,x,10,5,,,", "t row 3: start_s must be a number of seconds"),
        ("v,0,10", "t row 2: expected 7 columns, found 3"),
        (",0,10,5,,,", "t row 2: visitor must be 1 to 200 characters"),
        ("v,10,5,5,,,", "t row 2: start_s <= last_active_s <= end_s does not hold"),
        ("v,0,10,20,,,", "t row 2: start_s <= last_active_s <= end_s does not hold"),
        ("v,5,10,6,,,1", "t row 2: call_at_s is before start_s"),
        ("v,-1,10,6,,,", "t row 2: start_s must be from 0 to 316224000 seconds"),
        ("v,nan,10,6,,,", "t row 2: start_s must be from 0 to 316224000 seconds"),
        ("v,0,inf,6,,,", "t row 2: end_s must be from 0 to 316224000 seconds"),
        ("v,0,10,6,,,soon", "t row 2: call_at_s must be a number of seconds"),
    ],
)
def test_a_bad_row_is_named_in_one_line(body: str, message: str) -> None:
    with pytest.raises(TrafficError) as caught:
        parse_traffic(HEAD + "\n" + body + "\n", "t")
    assert str(caught.value) == message


@pytest.mark.parametrize("header", ["", "visitor,start_s", "a,b,c,d,e,f,g", HEAD + ",extra"])
def test_a_wrong_header_is_refused(header: str) -> None:
    with pytest.raises(TrafficError, match=r"^t row 1: the header must be visitor,start_s,"):
        parse_traffic(header + "\nv,0,1,1,,,\n", "t")


@given(st.text(max_size=300))
def test_garbage_is_parsed_or_refused_in_one_line(text: str) -> None:
    for candidate in (text, HEAD + "\n" + text):
        outcome = _parse_or_message(candidate)
        if isinstance(outcome, str):
            assert "\n" not in outcome and outcome.startswith("t row ")
        else:
            assert all(r.start_s <= r.last_active_s <= r.end_s for r in outcome)


def _parse_or_message(text: str) -> list[VisitRow] | str:
    try:
        return parse_traffic(text, "t")
    except TrafficError as exc:
        return str(exc)


seconds = st.floats(min_value=0, max_value=1e7, allow_nan=False).map(lambda x: round(x, 1))
text_cell = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00\r\n"), max_size=40
)


@st.composite
def visit_rows(draw: st.DrawFn) -> VisitRow:
    a, b, c = sorted(draw(st.lists(seconds, min_size=3, max_size=3)))
    call = draw(st.one_of(st.none(), seconds.map(lambda x: a + x)))
    visitor = draw(text_cell.filter(lambda s: s != ""))
    return VisitRow(visitor, a, c, b, draw(text_cell), draw(text_cell), call)


@given(st.lists(visit_rows(), max_size=8))
def test_a_written_file_reads_back_to_the_same_rows(rows: list[VisitRow]) -> None:
    assert parse_traffic(format_traffic(rows)) == rows
