"""A site's settings: defaults, validation and key-by-key merging (PATCH semantics).

Rules (CONTRACT.md, Operator HTTP API): durations are whole seconds >= 0, `idle_timeout_s` >= 1,
`cooldown_days` may be fractional, `pool_min <= pool_max`, `lease_on` is "load", "visible" or
"interaction", `max_leases_per_address` is null (5, or a quarter of `pool_max` if fewer) or >= 1,
static numbers are E.164 mapped to a label, channels are rules `channels.parse_rule` accepts.
Every error names the field (`settings.hold_s`). Webhook URLs given in a change may not name a
loopback, private, link-local or multicast address or `localhost` unless the caller allows
private targets (CALLTRACKING_WEBHOOK_ALLOW_PRIVATE); settings already stored are not judged again
here (the delivery checks the address it connects to).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from calltracking.core.errors import InvalidInput
from calltracking.core.netpolicy import url_refusal

E164_PREFIX = "+"


@dataclass(frozen=True, slots=True)
class Ga4Target:
    measurement_id: str
    api_secret: str


@dataclass(frozen=True, slots=True)
class MetrikaTarget:
    counter_id: str
    token: str
    extended_threshold: bool = False


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    url: str
    events: tuple[str, ...]
    secret: str


@dataclass(frozen=True, slots=True)
class Analytics:
    ga4: Ga4Target | None = None
    metrika: MetrikaTarget | None = None
    webhooks: tuple[WebhookTarget, ...] = ()


@dataclass(frozen=True, slots=True)
class SiteSettings:
    show_delay_s: int = 0
    idle_timeout_s: int = 3600
    hold_s: int = 1800
    cooldown_days: float = 7.0
    preempt_idle_s: int = 600
    pool_min: int = 0
    pool_max: int = 20
    channels: tuple[str, ...] | None = None
    static: Mapping[str, str] = field(default_factory=dict)
    route: str | None = None
    display_format: str = "+7 (XXX) XXX-XX-XX"
    record_calls: bool = True
    lease_on: str = "load"
    require_consent: bool = False
    max_leases_per_address: int | None = None
    analytics: Analytics = field(default_factory=Analytics)

    @property
    def lease_cap_per_address(self) -> int:
        """How many of the site's leases one client address may hold (CONTRACT.md v1.1)."""
        if self.max_leases_per_address is not None:
            return self.max_leases_per_address
        return max(1, min(DEFAULT_LEASES_PER_ADDRESS, self.pool_max // 4))

    @property
    def cooldown_s(self) -> float:
        # timedelta, as the store computes cooling_until, so both agree to the microsecond.
        return timedelta(days=self.cooldown_days).total_seconds()


DEFAULT_LEASES_PER_ADDRESS = 5
LEASE_ON = ("load", "visible", "interaction")
_WHOLE_SECONDS = ("show_delay_s", "idle_timeout_s", "hold_s", "preempt_idle_s")
# Ten years: longer durations mean nothing here and would overflow date arithmetic.
MAX_SECONDS = 10 * 366 * 86400
MAX_DAYS = 3660
_COUNTS = ("pool_min", "pool_max")


def merge_settings(
    base: SiteSettings, patch: Mapping[str, Any], *, allow_private_webhooks: bool = False
) -> SiteSettings:
    """Apply `patch` key by key over `base`; `analytics` targets given are replaced whole."""
    if not isinstance(patch, Mapping):
        raise InvalidInput("settings", "must be an object")
    known = {f.name for f in dataclasses.fields(SiteSettings)}
    changes: dict[str, Any] = {}
    for key, value in patch.items():
        if key not in known:
            raise InvalidInput(f"settings.{key}", "unknown setting")
        changes[key] = _parse_value(key, value, base)
    merged = dataclasses.replace(base, **changes)
    if merged.pool_min > merged.pool_max:
        raise InvalidInput("settings.pool_min", "must not exceed pool_max")
    analytics = patch.get("analytics")
    if not allow_private_webhooks and isinstance(analytics, Mapping) and "webhooks" in analytics:
        _check_webhook_targets(merged.analytics.webhooks)
    return merged


def _check_webhook_targets(hooks: tuple[WebhookTarget, ...]) -> None:
    for i, hook in enumerate(hooks):
        reason = url_refusal(hook.url)
        if reason is not None:
            raise InvalidInput(
                f"settings.analytics.webhooks[{i}].url", f"must be a public target ({reason})"
            )


def _parse_value(key: str, value: Any, base: SiteSettings) -> Any:
    name = f"settings.{key}"
    if key in _WHOLE_SECONDS or key in _COUNTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(name, "must be a whole number >= 0")
        if key in _WHOLE_SECONDS and value > MAX_SECONDS:
            raise InvalidInput(name, f"must be at most {MAX_SECONDS} seconds (ten years)")
        if key == "idle_timeout_s" and value < 1:
            raise InvalidInput(name, "must be at least 1")
        return value
    if key == "cooldown_days":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= MAX_DAYS
        ):
            raise InvalidInput(name, f"must be a number of days from 0 to {MAX_DAYS}")
        return float(value)
    if key in ("record_calls", "require_consent"):
        if not isinstance(value, bool):
            raise InvalidInput(name, "must be true or false")
        return value
    if key == "lease_on":
        if value not in LEASE_ON:
            raise InvalidInput(name, 'must be "load", "visible" or "interaction"')
        return value
    if key == "max_leases_per_address":
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000
        ):
            raise InvalidInput(name, "must be null or a whole number from 1 to 100000")
        return value
    if key == "route":
        if value is not None and (not isinstance(value, str) or not _is_dialplan_target(value)):
            raise InvalidInput(
                name, "must be null or a dialplan target exten@context, e.g. sales@operators"
            )
        return value or None
    if key == "display_format":
        if not isinstance(value, str) or "X" not in value or len(value) > 40:
            raise InvalidInput(name, "must be a text with X placeholders, at most 40 characters")
        return value
    if key == "channels":
        return _parse_channels(value)
    if key == "static":
        return _parse_static(value)
    if key == "analytics":
        return parse_analytics(value, base.analytics)
    raise InvalidInput(name, "unknown setting")  # pragma: no cover - guarded by the caller


def _is_dialplan_target(value: str) -> bool:
    """`exten@context`, as the shipped dialplan's route step takes it (Goto to that target)."""
    exten, at, context = value.partition("@")
    exten_chars = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+.")
    context_chars = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    return (
        bool(at)
        and 0 < len(value) <= 80
        and bool(exten)
        and bool(context)
        and set(exten) <= exten_chars
        and set(context) <= context_chars
    )


def _parse_channels(value: Any) -> tuple[str, ...] | None:
    from calltracking.core.channels import parse_rule

    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("settings.channels", "must be null or a list of rules")
    for i, rule in enumerate(value):
        try:
            parse_rule(rule)
        except ValueError as exc:
            raise InvalidInput(f"settings.channels[{i}]", str(exc)) from None
    return tuple(value)


def _parse_static(value: Any) -> dict[str, str]:
    from calltracking.core.numbers import is_e164

    if not isinstance(value, Mapping):
        raise InvalidInput("settings.static", "must be an object of number -> label")
    for number, label in value.items():
        if not is_e164(number):
            raise InvalidInput(f"settings.static.{number}", "must be an E.164 number")
        if not isinstance(label, str) or not label or len(label) > 100:
            raise InvalidInput(f"settings.static.{number}", "label must be 1 to 100 characters")
    return dict(value)


def parse_analytics(value: Any, base: Analytics) -> Analytics:
    if not isinstance(value, Mapping):
        raise InvalidInput("settings.analytics", "must be an object")
    result = base
    for key, target in value.items():
        name = f"settings.analytics.{key}"
        if key == "ga4":
            ga4 = (
                None
                if target is None
                else Ga4Target(
                    measurement_id=_text(target, "measurement_id", name),
                    api_secret=_text(target, "api_secret", name),
                )
            )
            result = dataclasses.replace(result, ga4=ga4)
        elif key == "metrika":
            metrika = (
                None
                if target is None
                else MetrikaTarget(
                    counter_id=_text(target, "counter_id", name),
                    token=_text(target, "token", name),
                    extended_threshold=_flag(target, "extended_threshold", name),
                )
            )
            result = dataclasses.replace(result, metrika=metrika)
        elif key == "webhooks":
            result = dataclasses.replace(result, webhooks=_parse_webhooks(target, name))
        else:
            raise InvalidInput(name, "unknown analytics target")
    return result


def _parse_webhooks(value: Any, name: str) -> tuple[WebhookTarget, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput(name, "must be a list")
    hooks = []
    for i, item in enumerate(value):
        item_name = f"{name}[{i}]"
        url = _text(item, "url", item_name)
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"{item_name}.url", "must be an http(s) URL")
        events = item.get("events") if isinstance(item, Mapping) else None
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) for e in events)
        ):
            raise InvalidInput(f"{item_name}.events", "must be a non-empty list of event names")
        hooks.append(
            WebhookTarget(url=url, events=tuple(events), secret=_text(item, "secret", item_name))
        )
    return tuple(hooks)


def _text(obj: Any, key: str, name: str) -> str:
    if not isinstance(obj, Mapping):
        raise InvalidInput(name, "must be an object")
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise InvalidInput(f"{name}.{key}", "is required text")
    return value.strip()


def _flag(obj: Mapping[str, Any], key: str, name: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name}.{key}", "must be true or false")
    return value


def settings_to_json(settings: SiteSettings, *, mask_secrets: bool = True) -> dict[str, Any]:
    """The settings as the API shows them; secrets masked unless stored."""
    data = dataclasses.asdict(settings)
    data["channels"] = list(settings.channels) if settings.channels is not None else None
    data["static"] = dict(settings.static)
    analytics = settings.analytics
    data["analytics"] = {
        "ga4": None
        if analytics.ga4 is None
        else {
            "measurement_id": analytics.ga4.measurement_id,
            "api_secret": mask(analytics.ga4.api_secret)
            if mask_secrets
            else analytics.ga4.api_secret,
        },
        "metrika": None
        if analytics.metrika is None
        else {
            "counter_id": analytics.metrika.counter_id,
            "token": mask(analytics.metrika.token) if mask_secrets else analytics.metrika.token,
            "extended_threshold": analytics.metrika.extended_threshold,
        },
        "webhooks": [
            {
                "url": w.url,
                "events": list(w.events),
                "secret": mask(w.secret) if mask_secrets else w.secret,
            }
            for w in analytics.webhooks
        ],
    }
    return data


def settings_from_json(data: Mapping[str, Any]) -> SiteSettings:
    """Rebuild stored settings (unmasked JSON written by `settings_to_json(mask_secrets=False)`)."""
    return merge_settings(SiteSettings(), data, allow_private_webhooks=True)


def mask(secret: str) -> str:
    """Show only the last 4 characters of a secret."""
    if len(secret) <= 4:
        return "****"
    return "****" + secret[-4:]
