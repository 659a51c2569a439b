"""Masked secrets sent back: GET shows `api_secret`, Metrika's `token` and webhook `secret` masked
(`****` and the last four characters). A client that PATCHes back what it read must keep the
real secret, never store the mask.

Rules: a secret exactly equal to the mask of the stored one for the same target (GA4, Metrika,
or the webhook with the same URL, else at the same place in the list) is replaced by the stored
secret; any other value starting with `****` is refused with 422, as no real secret looks so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from calltracking.core.errors import InvalidInput
from calltracking.core.settings import Analytics, mask

MASK_START = "****"


def keep_stored_secrets(settings_patch: Any, stored: Analytics) -> Any:
    """The `settings` of a request with masked secrets swapped for the stored ones."""
    if not isinstance(settings_patch, Mapping) or not isinstance(
        settings_patch.get("analytics"), Mapping
    ):
        return settings_patch
    analytics = dict(settings_patch["analytics"])
    name = "settings.analytics"
    if isinstance(analytics.get("ga4"), Mapping):
        real = stored.ga4.api_secret if stored.ga4 else None
        analytics["ga4"] = _swap(analytics["ga4"], "api_secret", real, f"{name}.ga4")
    if isinstance(analytics.get("metrika"), Mapping):
        real = stored.metrika.token if stored.metrika else None
        analytics["metrika"] = _swap(analytics["metrika"], "token", real, f"{name}.metrika")
    if isinstance(analytics.get("webhooks"), list):
        by_url = {hook.url: hook.secret for hook in reversed(stored.webhooks)}
        hooks = []
        for i, hook in enumerate(analytics["webhooks"]):
            if isinstance(hook, Mapping):
                url = hook.get("url")
                real = by_url.get(url) if isinstance(url, str) else None
                if real is None and i < len(stored.webhooks):
                    real = stored.webhooks[i].secret
                hook = _swap(hook, "secret", real, f"{name}.webhooks[{i}]")
            hooks.append(hook)
        analytics["webhooks"] = hooks
    return {**settings_patch, "analytics": analytics}


def _swap(target: Mapping[str, Any], key: str, real: str | None, name: str) -> dict[str, Any]:
    given = target.get(key)
    result = dict(target)
    if not isinstance(given, str) or not given.startswith(MASK_START):
        return result
    if real is not None and given == mask(real):
        result[key] = real
        return result
    raise InvalidInput(
        f"{name}.{key}", "is a masked value that matches no stored secret; send the secret itself"
    )
