"""Asterisk's own reading of an AGI command line, so tests check quoting with a reader the server
did not write: res_agi.c parse_args, which splits on blanks outside double quotes and takes a
backslash as "the next character literally"."""

from __future__ import annotations


def agi_args(line: str) -> list[str]:
    """Split a command line as res_agi.c parse_args does (quotes, backslash escapes)."""
    args: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if current is None:
                current = []
        elif ch in " \t" and not quoted and not escaped:
            if current is not None:
                args.append("".join(current))
            current = None
        elif ch == "\\" and not escaped:
            escaped = True
            continue
        else:
            current = (current or []) + [ch]
        escaped = False
    if current is not None:
        args.append("".join(current))
    return args
