"""bench.nodes_bench offers each layout the handshakes in flight its options say."""

from __future__ import annotations

from bench.nodes_bench import _in_flight, parse_args

SERVERS = ["--database-url", "postgresql+asyncpg://x/y", "--amqp-url", "amqp://x/"]


def test_in_flight_is_the_same_for_every_layout_by_default() -> None:
    args = parse_args(["--opening", "100", *SERVERS])
    assert [_in_flight(args, nodes) for nodes in (1, 2, 3)] == [100, 100, 100]


def test_in_flight_grows_with_the_web_nodes_when_asked_per_node() -> None:
    args = parse_args(["--opening", "100", "--opening-per-node", *SERVERS])
    assert [_in_flight(args, nodes) for nodes in (1, 2, 3)] == [100, 200, 300]
