"""Fixtures for the machine's real PostgreSQL and RabbitMQ.

Each test session makes its own database and its own vhost, so runs sharing the servers never see
each other's data. When a server is not running the tests skip with a message saying how to start
it, except in CI (`CI=true`), where a missing service is a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _missing(what: str, how: str) -> None:
    message = f"{what} is not reachable; start it with: {how} (or run .ci/run, which does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            PG_HOST,
            "-p",
            str(PG_PORT),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; yields its name."""
    if not _reachable(PG_HOST, PG_PORT) or shutil.which("psql") is None:
        _missing(
            "PostgreSQL at 127.0.0.1:5432",
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        )
    name = f"ct_test_{os.getpid()}_{secrets.token_hex(3)}"
    _psql(f'CREATE DATABASE "{name}"')
    yield name
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url(pg_database: str) -> str:
    return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{pg_database}"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def amqp_vhost() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test session (guest has full rights on it)."""
    if not _reachable(AMQP_HOST, AMQP_PORT) or shutil.which("rabbitmqctl") is None:
        _missing("RabbitMQ at 127.0.0.1:5672", "rabbitmq-server -detached")
    vhost = f"ct_test_{os.getpid()}_{secrets.token_hex(3)}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield vhost
    _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def amqp_url(amqp_vhost: str) -> str:
    return f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{amqp_vhost}"
