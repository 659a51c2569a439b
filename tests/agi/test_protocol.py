"""The pure FastAGI wire helpers: reply lines, the script name and query, quoting, the header."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agi.protocol import ProtocolError, Reply, parse_env, parse_reply, quote, split_script
from tests.agi.agi_args import agi_args


@pytest.mark.parametrize(
    ("line", "code", "result", "data"),
    [
        ("200 result=1", 200, "1", None),
        ("200 result=0", 200, "0", None),
        ("200 result=1 (74951110001)", 200, "1", "74951110001"),
        ('200 result=1 ("" <+79161234567>)', 200, "1", '"" <+79161234567>'),
        ("200 result=1 (a (b) c)", 200, "1", "a (b) c"),
        ("200 result=1 ()", 200, "1", ""),
        ("200 result=-1", 200, "-1", None),
        ("200 result=0 endpos=1234", 200, "0", None),
        ("510 Invalid or unknown command", 510, None, None),
        ("511 Command Not Permitted on a dead channel or intercept routine", 511, None, None),
        ("200 result=1\r", 200, "1", None),
    ],
)
def test_parse_reply(line: str, code: int, result: str | None, data: str | None) -> None:
    assert parse_reply(line) == Reply(code, result, data, line.rstrip("\r"))


@pytest.mark.parametrize(
    "line", ["", "HANGUP", "hello", "200", "200 nonsense", "200 result=1 (x) more", "20 result=1"]
)
def test_parse_reply_refuses_garbage(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse_reply(line)


@pytest.mark.parametrize(
    ("script", "name", "query"),
    [
        ("calltracking", "calltracking", {}),
        ("calltracking?did=74951110001", "calltracking", {"did": "74951110001"}),
        ("calltracking?did=+7495&did=1", "calltracking", {"did": "+7495"}),
        ("calltracking?did=%2B7495&x", "calltracking", {"did": "+7495", "x": ""}),
        ("/calltracking/", "calltracking", {}),
        ("", "", {}),
        ("other?did=1", "other", {"did": "1"}),
    ],
)
def test_split_script(script: str, name: str, query: dict[str, str]) -> None:
    assert split_script(script) == (name, query)


@given(st.text())
def test_quote_survives_asterisks_argument_parser(value: str) -> None:
    line = f"SET VARIABLE X {quote(value)}"
    assert "\n" not in line
    expected = "".join(ch for ch in value if ord(ch) >= 0x20 and ord(ch) != 0x7F)
    assert agi_args(line) == ["SET", "VARIABLE", "X", expected]


def test_parse_env_keeps_empty_values_and_refuses_other_lines() -> None:
    env = parse_env(b"agi_network: yes\nagi_accountcode: \nagi_arg_1: a: b\n")
    assert env == {"agi_network": "yes", "agi_accountcode": "", "agi_arg_1": "a: b"}
    with pytest.raises(ProtocolError):
        parse_env(b"agi_network: yes\nGET / HTTP/1.1\n")
