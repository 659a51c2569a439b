"""Domain errors. Each carries a stable `code` word the HTTP API puts in its error body.

DomainError            code, message
├── InvalidInput       code "invalid"; `field` names the offending input (422)
├── NotFound           code "not_found" (404)
├── Conflict           code "conflict" (409)
└── PoolExhausted      code "pool_exhausted" (409)
"""

from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    code = "invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class PoolExhausted(DomainError):
    code = "pool_exhausted"
