"""What an API handler is given: the request, the shared services and who is asking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from calltracking.services import Services
from calltracking.store.tokens import Principal


@dataclass(frozen=True, slots=True)
class Ctx:
    request: web.Request
    services: Services
    principal: Principal | None  # None only on the signed recording URL

    @property
    def who(self) -> Principal:
        assert self.principal is not None
        return self.principal

    @property
    def scope(self) -> str | None:
        """The account whose objects are visible; None: the admin sees every account's."""
        return None if self.who.admin else self.who.account_id

    def now(self) -> datetime:
        return self.services.clock()

    def path(self, name: str) -> str:
        return self.request.match_info[name]
