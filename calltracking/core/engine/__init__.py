"""The visitor lifecycle of one site as a pure state machine (see `site.py`)."""

from calltracking.core.engine.allocation import Policy
from calltracking.core.engine.site import SiteEngine, SiteRules, Visitor

__all__ = ["Policy", "SiteEngine", "SiteRules", "Visitor"]
