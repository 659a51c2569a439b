"""Settings of one tracker process, read once in the CLI and passed down (nothing reads the
environment later).

Sources, strongest first: `CALLTRACKING_*` environment variables, then a TOML file given with
`--config` (same names, lower case, without the prefix), then the defaults of CONTRACT.md.
A bad value raises `ConfigError` whose message is one line naming the setting.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from calltracking.core.netpolicy import parse_networks

PREFIX = "CALLTRACKING_"


class ConfigError(Exception):
    """A setting has a bad value; the message names it in one line."""


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str = "sqlite+aiosqlite:///calltracking.db"
    amqp_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    ami_host: str = ""
    ami_port: int = 5038
    ami_username: str = ""
    ami_secret: str = field(default="", repr=False)
    pbx_id: str = "asterisk"
    trunk_contexts: tuple[str, ...] = ("from-trunk",)
    recordings_dir: Path = Path("/var/spool/asterisk/monitor")
    asterisk_monitor_dir: str = "/var/spool/asterisk/monitor"
    country_code: str = "7"
    admin_token: str = field(default="", repr=False)
    ga4_endpoint: str = "https://www.google-analytics.com"
    metrika_endpoint: str = "https://api-metrika.yandex.net"
    export_interval_s: float = 60.0
    ws_max_per_address: int = 200
    trusted_proxies: tuple[str, ...] = ()
    stale_call_s: float = 14400.0
    public_url: str = ""  # how browsers reach this tracker (for snippet tags); empty: from request
    signing_key: str = field(default="", repr=False)  # for recording URLs; random when empty
    agi_allow: str = ""  # FastAGI peers allowed (addresses or networks); empty: any peer
    webhook_allow_private: bool = False  # webhooks may reach loopback/private/link-local targets
    # A request head (or the next, on keep-alive) within this; above the 15 s for which clients
    # such as aiohttp keep an idle connection, so they close it first.
    http_header_timeout_s: float = 20.0
    http_body_timeout_s: float = 30.0  # a request body within this once its head arrived
    http_max_connections: int = 0  # open HTTP connections at most; 0: from the descriptor limit
    metrics_port: int = 0  # /healthz, /livez, /metrics for a process without the web part; 0: none

    def describe(self) -> dict[str, str]:
        """Every setting for a start-up log line, secrets and passwords masked."""
        shown: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("ami_secret", "admin_token", "signing_key"):
                value = "****" if value else ""
            elif f.name in ("database_url", "amqp_url"):
                value = mask_url_password(str(value))
            shown[f.name] = str(value)
        return shown


def mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def load_config(env: Mapping[str, str], toml_path: Path | None = None) -> Config:
    return _build(_raw(env, toml_path))


def given_settings(env: Mapping[str, str], toml_path: Path | None = None) -> frozenset[str]:
    """The names of the settings the environment or the TOML file set (`http_port`, ...): the
    demo keeps its own choices only for the others."""
    names = {f.name for f in dataclasses.fields(Config)}
    return frozenset(name for name in _raw(env, toml_path) if name in names)


def _raw(env: Mapping[str, str], toml_path: Path | None) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if toml_path is not None:
        try:
            with toml_path.open("rb") as fh:
                file_values = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--config {toml_path}: cannot read it ({exc})") from None
        raw.update({k.lower(): v for k, v in file_values.items()})
    for key, value in env.items():
        if key.startswith(PREFIX):
            raw[key[len(PREFIX) :].lower()] = value
    return raw


def _build(raw: Mapping[str, Any]) -> Config:
    fields = {f.name: f for f in dataclasses.fields(Config)}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in fields:
            continue  # unknown names are tolerated: other tools share the prefix
        values[name] = _convert(name, value, getattr(Config(), name))
    config = Config(**values)
    _check(config)
    return config


def _convert(name: str, value: Any, default: Any) -> Any:
    setting = PREFIX + name.upper()
    try:
        if isinstance(default, bool):
            return str(value).lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            items = value if isinstance(value, list) else str(value).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if isinstance(default, Path):
            return Path(str(value))
        return str(value)
    except (TypeError, ValueError):
        kind = type(default).__name__
        raise ConfigError(f"{setting}: {value!r} is not a valid {kind}") from None


MIN_SIGNING_KEY_BYTES = 32


def _check(config: Config) -> None:
    for name in ("http_port", "agi_port", "ami_port", "metrics_port"):
        port = getattr(config, name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{PREFIX}{name.upper()}: {port} is not a TCP port")
    if not config.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            f"{PREFIX}DATABASE_URL: use sqlite+aiosqlite:///FILE or postgresql+asyncpg://..."
        )
    if config.amqp_url and not config.amqp_url.startswith(("amqp://", "amqps://")):
        raise ConfigError(f"{PREFIX}AMQP_URL: must start with amqp:// or amqps://")
    if not config.country_code.isdigit() or not 1 <= len(config.country_code) <= 3:
        raise ConfigError(f"{PREFIX}COUNTRY_CODE: {config.country_code!r} is not a country code")
    if config.ami_host and not config.ami_username:
        raise ConfigError(f"{PREFIX}AMI_USERNAME: required when CALLTRACKING_AMI_HOST is set")
    timeouts = ("http_header_timeout_s", "http_body_timeout_s")
    for name in ("export_interval_s", "stale_call_s", *timeouts):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{PREFIX}{name.upper()}: must be greater than 0")
    if config.ws_max_per_address < 1:
        raise ConfigError(f"{PREFIX}WS_MAX_PER_ADDRESS: must be at least 1")
    if config.http_max_connections < 0:
        raise ConfigError(f"{PREFIX}HTTP_MAX_CONNECTIONS: must be 0 (automatic) or more")
    try:
        parse_networks(config.agi_allow)
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}AGI_ALLOW: {exc}") from None
    if not config.trunk_contexts:
        raise ConfigError(f"{PREFIX}TRUNK_CONTEXTS: name at least one context")
    if config.signing_key and len(config.signing_key.encode()) < MIN_SIGNING_KEY_BYTES:
        # A short key can be guessed offline from one signed recording URL.
        raise ConfigError(
            f"{PREFIX}SIGNING_KEY: must be at least {MIN_SIGNING_KEY_BYTES} bytes "
            "(e.g. `openssl rand -hex 32`), or unset for a random key per start"
        )
