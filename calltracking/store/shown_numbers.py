"""What the decider (store/deciders.py) tells a visitor's tabs: the engine's number formatted
with the site's display format, and which visitors a batch's effects changed.

Rules:
- A visitor the engine shows nothing (unknown, or refused before any row) is shown the site's
  untracked default.
- Only `Show` effects change what a visitor sees: those visitors are refreshed, no others.
"""

from __future__ import annotations

from calltracking.core.engine import SiteEngine
from calltracking.core.engine import events as ev
from calltracking.core.kinds import AttributionKind, DisplayKind
from calltracking.core.numbers import format_display
from calltracking.store.sites import Site
from calltracking.store.visitors import Shown


def now_shown(engine: SiteEngine, visitor_id: str, country_code: str) -> Shown:
    """What the engine shows the visitor now, formatted for its site."""
    shown = engine.shown(visitor_id)
    site = engine.rules
    if shown is None:
        return _format(
            site.settings.display_format,
            DisplayKind.UNTRACKED,
            site.defaults[AttributionKind.UNTRACKED],
            country_code,
        )
    return _format(site.settings.display_format, shown[0], shown[1], country_code)


def untracked(site: Site, country_code: str) -> Shown:
    """The site's untracked default (a refused hello is answered with it)."""
    return _format(
        site.settings.display_format,
        DisplayKind.UNTRACKED,
        site.defaults[AttributionKind.UNTRACKED],
        country_code,
    )


def changed_visitors(effects: list[ev.Effect]) -> set[str]:
    """The visitors whose display the effects changed."""
    return {e.visitor_id for e in effects if isinstance(e, ev.Show) and e.visitor_id}


def _format(display_format: str, kind: DisplayKind, e164: str, country_code: str) -> Shown:
    return Shown(kind, e164, format_display(e164, display_format, country_code))
