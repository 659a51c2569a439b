"""What the visitor websocket and the lifecycle service exchange: a tab's hello, what a
visitor is shown, and the answer to a hello. The lifecycle itself is `core.engine`, served by
`store.deciders`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from calltracking.core.kinds import DisplayKind


@dataclass(frozen=True, slots=True)
class Shown:
    kind: DisplayKind
    e164: str
    display: str

    def frame(self) -> dict[str, str]:
        return {
            "type": "number",
            "kind": str(self.kind),
            "e164": self.e164,
            "display": self.display,
        }


@dataclass(frozen=True, slots=True)
class Hello:
    url: str
    referrer: str
    visitor_id: str | None = None
    ga: str | None = None
    ga_session: str | None = None
    ga_cookies: Mapping[str, str] | None = None
    ym: str | None = None
    user_agent: str | None = None
    automated: bool = False  # the browser reported navigator.webdriver: a headless robot
    address: str = ""  # the client address (per-address lease cap, hello rate)


@dataclass(frozen=True, slots=True)
class Welcome:
    visitor_id: str
    visit_id: str
    tab_id: str
    shown: Shown
    changed: frozenset[str] = field(default_factory=frozenset)  # other visitors to refresh
