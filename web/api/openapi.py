"""The OpenAPI 3.1 document, built from the route table (routes.ROUTES) alone."""

from __future__ import annotations

import re
from typing import Any

from web.api import schemas
from web.api.auth import Access
from web.api.routes import Route

_PATH_PARAM = re.compile(r"{(\w+)}")
_STATUS_TEXT = {
    400: "the body is not a JSON object",
    401: "no token, or a token nobody issued",
    403: "forbidden (admin endpoint, or a bad signed URL)",
    404: "not found (or another account's)",
    409: "conflict",
    413: "the body is over 64 KiB",
    422: "invalid input; `field` names it",
}


def build_document(routes: tuple[Route, ...]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "calltracking operator API",
            "version": "1",
            "description": "Errors are {error: {code, message, field?}}; lists are newest "
            "first with a `next` cursor; times are ISO 8601 with offset.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": schemas.ERROR, "Call": schemas.CALL, "Site": schemas.SITE},
        },
        "paths": paths,
    }


def _operation(route: Route) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(route.path)
    ]
    params += [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "description": p.description or p.schema.get("description", ""),
            "schema": p.schema,
        }
        for p in route.query
    ]
    media = "audio/wav" if route.response is schemas.AUDIO else "application/json"
    responses: dict[str, Any] = {
        str(route.ok): {
            "description": "success",
            "content": {media: {"schema": route.response or {"type": "object"}}},
        }
    }
    errors = route.errors if route.access is Access.PUBLIC else (401, *route.errors)
    if route.access is Access.ADMIN:
        errors = (*errors, 403)
    for status in sorted(set(errors)):
        responses[str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__.removesuffix("_handler"),
        "summary": route.summary,
        "x-access": str(route.access),
        "parameters": params,
        "responses": responses,
    }
    if route.access is not Access.PUBLIC:
        operation["security"] = [{"bearer": []}]
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.body}},
        }
    return operation
