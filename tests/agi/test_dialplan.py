"""The shipped dialplan files, read by a small parser and run by a small interpreter.

The interpreter knows only what the shipped context uses (Set, GotoIf, Goto, AGI, MixMonitor,
NoOp, Log; CUT, LEN, DIALPLAN_EXISTS, STRFTIME, CALLERID(name); `$[a = b]` and `!=`; the `T`
extension an expired TIMEOUT(absolute) jumps to), so a change that reaches for something else
fails here first and gets a look from someone who knows Asterisk. A frozen tracker is modelled
as Asterisk behaves with the shipped guard (res_agi.c run_agi, pbx.c): with AGIEXITONHANGUP=yes
the absolute timeout ends AGI() with AGISTATUS=HANGUP and the call continues at `T`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DIALPLAN = Path(__file__).resolve().parents[2] / "dialplan"
INBOUND = "from-trunk"  # CONTRACT.md: the default CALLTRACKING_TRUNK_CONTEXTS
DEFAULT_ROUTE = "calltracking-default-route"
UNIQUEID = "1795592516.1"


@dataclass(frozen=True, slots=True)
class Step:
    priority: int
    label: str | None
    app: str
    args: str


Plan = dict[str, dict[str, list[Step]]]


def _strip_comment(line: str) -> str:
    return re.sub(r"(?<!\\);.*", "", line).strip()


def parse_extensions(text: str) -> Plan:
    plan: Plan = {}
    context: str | None = None
    exten: str | None = None
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            context = line[1:-1]
            plan[context] = {}
            continue
        key, _, value = (part.strip() for part in line.partition("=>"))
        assert context is not None, raw
        assert key in ("exten", "same"), raw
        if key == "exten":
            exten, value = value.split(",", 1)
            plan[context][exten] = []
        assert exten is not None
        steps = plan[context][exten]
        prio, app_call = value.split(",", 1)
        match = re.fullmatch(r"(\d+|n)(?:\((\w+)\))?", prio)
        assert match, raw
        number = int(match[1]) if match[1] != "n" else steps[-1].priority + 1
        app, _, args = app_call.partition("(")
        steps.append(Step(number, match[2], app, args[: args.rindex(")")] if args else ""))
    return plan


def parse_ini(text: str) -> list[tuple[str, dict[str, list[str]]]]:
    """Sections in order (PJSIP reuses names across types), each key with all its values."""
    sections: list[tuple[str, dict[str, list[str]]]] = []
    for raw in text.splitlines():
        line = _strip_comment(raw)
        header = re.fullmatch(r"\[([^\]]+)\](\([^)]*\))?", line)  # `[name]`, `[name](+)`
        if header:
            sections.append((header[1], {}))
        elif line:
            key, _, value = (part.strip() for part in line.partition("="))
            sections[-1][1].setdefault(key, []).append(value)
    return sections


def _pattern_matches(pattern: str, exten: str) -> bool:
    if not pattern.startswith("_"):
        return pattern == exten
    table = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}
    regex = "".join(table.get(ch, re.escape(ch)) for ch in pattern[1:])
    return re.fullmatch(regex, exten) is not None


@dataclass
class Call:
    """One inbound call run through the plan; `agi` is what the FastAGI sets (None: it is down)."""

    plan: Plan
    agi: dict[str, str] | None
    caller_name: str = ""
    frozen: bool = False  # the tracker accepts the connection and never answers
    existing: set[tuple[str, str]] = field(default_factory=set)  # (context, exten) elsewhere
    vars: dict[str, str] = field(default_factory=dict)
    visited: list[str] = field(default_factory=list)
    agi_calls: list[list[str]] = field(default_factory=list)
    recordings: list[str] = field(default_factory=list)

    def run(self, exten: str, context: str = INBOUND) -> tuple[str, str, str]:
        """Run until the call leaves the shipped files; return where it went."""
        self.vars["CALLERID(name)"] = self.caller_name
        prio: str = "1"
        for _ in range(200):
            if context not in self.plan:
                return context, exten, prio
            self.visited.append(context)
            self.vars["EXTEN"] = exten
            name = next(p for p in self.plan[context] if _pattern_matches(p, exten))
            steps = self.plan[context][name]
            index = next(i for i, s in enumerate(steps) if prio in (str(s.priority), s.label))
            jump = None
            while jump is None and index < len(steps):
                jump = self._execute(steps[index])
                index += 1
            assert jump is not None, f"fell off the end of {context},{name}"
            context, exten, prio = (
                (context, exten, jump[0])
                if len(jump) == 1
                else (context, *jump)
                if len(jump) == 2
                else jump
            )
        raise AssertionError("dialplan loops")

    def _execute(self, step: Step) -> tuple[str, ...] | None:
        args = self.expand(step.args)
        if step.app in ("NoOp", "Log"):
            return None
        if step.app == "Set":
            name, _, value = args.partition("=")
            self.vars[name] = value
            return None
        if step.app == "AGI":
            self.agi_calls.append(args.split(","))
            if self.frozen:
                # Only the guard ends the wait: a timeout that is set, and AGI() leaving on it.
                assert float(self.vars.get("TIMEOUT(absolute)", "0")) > 0, "AGI() unguarded"
                assert self.vars.get("AGIEXITONHANGUP") == "yes", "AGI() would wait on"
                self.vars["AGISTATUS"] = "HANGUP"
                return ("T", "1")
            self.vars["AGISTATUS"] = "FAILURE" if self.agi is None else "SUCCESS"
            self.vars.update(self.agi or {})
            return None
        if step.app == "MixMonitor":
            self.recordings.append(args)
            return None
        if step.app == "Goto":
            return tuple(args.split(","))
        if step.app == "GotoIf":
            condition, _, targets = args.partition("?")
            true, _, false = targets.partition(":")
            chosen = true if condition.strip() not in ("", "0") else false
            return tuple(chosen.split(",")) if chosen else None
        raise AssertionError(f"the test interpreter does not know {step.app}")

    def expand(self, text: str) -> str:
        while (start := text.rfind("${")) >= 0 or (start := text.rfind("$[")) >= 0:
            is_var = text.startswith("${", start)
            end = text.index("}" if is_var else "]", start)
            inner = text[start + 2 : end]
            value = self._variable(inner) if is_var else self._expression(inner)
            text = text[:start] + value + text[end + 1 :]
        return text

    def _variable(self, name: str) -> str:
        function = re.fullmatch(r"(\w+)\((.*)\)", name)
        if function is None:
            base, _, offset = name.partition(":")
            value = {"UNIQUEID": UNIQUEID, "EPOCH": "1795592516"}.get(base, self.vars.get(base, ""))
            return value[int(offset) :] if offset else value
        func, arg = function[1], function[2]
        if func == "CUT":
            var, delim, part = arg.split(",")
            pieces = self.vars.get(var, "").split(delim)
            return pieces[int(part) - 1] if int(part) <= len(pieces) else ""
        if func == "LEN":
            return str(len(arg))
        if func == "DIALPLAN_EXISTS":
            context, exten, _ = arg.split(",")
            return "1" if (context, exten) in self.existing else "0"
        if func == "STRFTIME":
            return "2026/11/25"
        if func == "CALLERID":
            return self.vars.get(f"CALLERID({arg})", "")
        raise AssertionError(f"the test interpreter does not know {func}()")

    @staticmethod
    def _expression(expr: str) -> str:
        match = re.fullmatch(r'\s*("[^"]*"|\S+)\s*(!=|=)\s*("[^"]*"|\S+)\s*', expr)
        assert match, f"the test interpreter does not know $[{expr}]"
        equal = match[1].strip('"') == match[3].strip('"')
        return "1" if equal == (match[2] == "=") else "0"


@pytest.fixture(scope="module")
def plan() -> Plan:
    return parse_extensions((DIALPLAN / "extensions_calltracking.conf").read_text())


def tracked(**extra: str) -> dict[str, str]:
    values = {
        "CALLTRACKING_SITE": "site-1",
        "CALLTRACKING_SOURCE": "yandex",
        "CALLTRACKING_MEDIUM": "cpc",
        "CALLTRACKING_CAMPAIGN": "spring",
        "CALLTRACKING_LABEL": "yandex/cpc",
        "CALLTRACKING_ROUTE": "",
        "CALLTRACKING_RECORD": "1",
        "CALLTRACKING_KIND": "dynamic",
    }
    return values | extra


def test_inbound_context_takes_did_calls(plan: Plan) -> None:
    assert INBOUND in plan
    assert any(_pattern_matches(p, "74951110001") for p in plan[INBOUND])


def test_agi_line_targets_the_calltracking_script_with_the_extension(plan: Plan) -> None:
    steps = next(s for p, s in plan[INBOUND].items() if _pattern_matches(p, "74951110001"))
    agi = [step.args.split(",") for step in steps if step.app == "AGI"]
    assert len(agi) == 1
    url, *args = agi[0]
    assert re.fullmatch(r"agi://[^/:]+:4573/calltracking", url)
    assert args == ["${EXTEN}"]


def test_tracked_call_is_labelled_recorded_and_takes_the_default_route(plan: Plan) -> None:
    call = Call(plan, agi=tracked(), caller_name="Ivan")
    assert call.run("74951110001") == ("operators", "s", "1")
    assert call.agi_calls == [["agi://127.0.0.1:4573/calltracking", "74951110001"]]
    assert call.vars["CALLTRACKING_DID"] == "74951110001"
    assert call.vars["CALLERID(name)"] == "yandex/cpc Ivan"
    assert call.recordings == [f"calltracking/2026/11/25/{UNIQUEID}.wav"]
    assert call.vars["CALLTRACKING_RECORDING"] == call.recordings[0]
    assert DEFAULT_ROUTE in call.visited


def test_label_alone_when_the_caller_has_no_name(plan: Plan) -> None:
    call = Call(plan, agi=tracked(CALLTRACKING_LABEL="initial"))
    call.run("74951110001")
    assert call.vars["CALLERID(name)"] == "initial"


@pytest.mark.parametrize(
    ("agi", "why"),
    [
        (None, "AGISTATUS=FAILURE: the tracker is down"),
        ({}, "SUCCESS but nothing set: a crashed handler"),
        (tracked(CALLTRACKING_KIND=""), "SUCCESS, KIND empty: a dialogue cut short"),
        ({"CALLTRACKING_KIND": "unknown", "CALLTRACKING_ERROR": "1"}, "internal error"),
        (tracked(CALLTRACKING_KIND="", CALLTRACKING_ROUTE="sales@operators"), "no KIND"),
    ],
)
def test_failover_takes_the_default_route_and_records(
    plan: Plan, agi: dict[str, str] | None, why: str
) -> None:
    call = Call(plan, agi=agi, caller_name="Ivan", existing={("operators", "sales")})
    assert call.run("74951110001") == ("operators", "s", "1"), why
    assert DEFAULT_ROUTE in call.visited
    assert call.vars["CALLERID(name)"] == "Ivan"  # no label without an answer
    assert call.recordings == [f"calltracking/2026/11/25/{UNIQUEID}.wav"]


@pytest.mark.parametrize(("record", "recorded"), [("1", True), ("0", False), ("", False)])
def test_mixmonitor_runs_only_when_calltracking_record_is_1(
    plan: Plan, record: str, recorded: bool
) -> None:
    call = Call(plan, agi=tracked(CALLTRACKING_RECORD=record))
    call.run("74951110001")
    assert bool(call.recordings) is recorded


@pytest.mark.parametrize(
    ("route", "destination"),
    [
        ("sales@operators", ("operators", "sales", "1")),
        ("nowhere@operators", ("operators", "s", "1")),  # not in the dialplan: default
        ("sales", ("operators", "s", "1")),  # no context: default
        ("", ("operators", "s", "1")),
    ],
)
def test_route_goes_to_the_sites_target_when_it_exists(
    plan: Plan, route: str, destination: tuple[str, str, str]
) -> None:
    call = Call(plan, agi=tracked(CALLTRACKING_ROUTE=route), existing={("operators", "sales")})
    assert call.run("74951110001") == destination


def test_plus_did_runs_the_same_flow_without_the_plus(plan: Plan) -> None:
    call = Call(plan, agi=tracked())
    call.run("+74951110001")
    assert call.agi_calls == [["agi://127.0.0.1:4573/calltracking", "74951110001"]]


def test_call_without_did_skips_the_agi(plan: Plan) -> None:
    call = Call(plan, agi=tracked())
    assert call.run("s") == ("operators", "s", "1")
    assert call.agi_calls == []


def test_manager_user_has_the_least_rights_the_listener_needs() -> None:
    sections = parse_ini((DIALPLAN / "manager_calltracking.conf").read_text())
    assert [name for name, _ in sections] == ["general", "calltracking"]
    assert sections[0][1] == {"timestampevents": ["yes"]}  # Asterisk's own event times
    user = sections[1][1]
    assert set(user["read"][0].split(",")) == {"call", "dialplan", "agi"}  # Cdr is not used
    assert user["write"] == ["reporting"]  # CoreShowChannels and Getvar, nothing that acts
    assert user["deny"] == ["0.0.0.0/0.0.0.0"]
    assert len(user["permit"]) == 1
    assert user["permit"][0].endswith("/255.255.255.255")
    assert user["secret"]


def test_pjsip_example_endpoint_enters_the_inbound_context(plan: Plan) -> None:
    sections = parse_ini((DIALPLAN / "pjsip_trunk_example.conf").read_text())
    endpoints = [values for _, values in sections if values.get("type") == ["endpoint"]]
    assert endpoints
    assert all(values["context"] == [INBOUND] for values in endpoints)
    assert INBOUND in plan


def test_a_frozen_tracker_holds_the_call_at_most_the_guard_then_the_default_route(
    plan: Plan,
) -> None:
    call = Call(plan, agi=None, frozen=True, caller_name="Ivan")
    assert call.run("74951110001") == ("operators", "s", "1")
    assert len(call.agi_calls) == 1
    assert call.visited.count(INBOUND) >= 2  # through `T` and back to the failover path
    assert DEFAULT_ROUTE in call.visited
    assert call.vars["TIMEOUT(absolute)"] == "0"  # no limit left on the rest of the call
    assert call.vars["CALLERID(name)"] == "Ivan"
    assert call.recordings == [f"calltracking/2026/11/25/{UNIQUEID}.wav"]


def test_the_agi_guard_is_short_and_lifted_once_the_tracker_answered(plan: Plan) -> None:
    steps = next(s for p, s in plan[INBOUND].items() if _pattern_matches(p, "74951110001"))
    apps = [(step.app, step.args) for step in steps]
    agi = next(i for i, (app, _) in enumerate(apps) if app == "AGI")
    before = dict(a.split("=", 1) for app, a in apps[:agi] if app == "Set")
    assert 0 < float(before["TIMEOUT(absolute)"]) <= 3
    assert before["AGIEXITONHANGUP"] == "yes"
    assert apps[agi + 1] == ("Set", "TIMEOUT(absolute)=0")
    call = Call(plan, agi=tracked())
    call.run("74951110001")
    assert call.vars["TIMEOUT(absolute)"] == "0"
