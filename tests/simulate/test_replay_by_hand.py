"""Small traffic files whose outcome is worked out by hand, replayed through the engine.

Each test's docstring is the hand calculation; pool numbers are N1, N2, ... in allocation order
(never-used first, then released longest ago)."""

from __future__ import annotations

from typing import Any

from calltracking.core.engine import Policy
from calltracking.core.settings import SiteSettings
from calltracking.simulate.replay import Replay, Scenario, replay
from calltracking.simulate.traffic import HEADER, parse_traffic


def traffic(*rows: str) -> str:
    return ",".join(HEADER) + "\n" + "\n".join(rows) + "\n"


def run(text: str, pool: int, **settings: Any) -> dict[str, Any]:
    return replay(parse_traffic(text), Scenario(SiteSettings(**settings), pool=pool)).to_json()


def test_a_call_during_the_display_delay_lands_on_initial() -> None:
    """a arrives at 0 and calls at 20, before the 50 s delay ends: it dials the initial number."""
    result = run(traffic("a,0,100,100,https://shop.example/,,20"), pool=2, show_delay_s=50)
    assert result["by_kind"] == {"initial": 1}
    assert (result["calls"], result["tracked"], result["correct"]) == (1, 0, 0)


def test_a_late_call_after_the_number_was_reused_goes_to_the_wrong_visitor() -> None:
    """Pool of 1. a holds N1 from 0 to 100. b arrives at 200: N1 is in a's hold, but no other
    number exists, so the hold yields and b gets N1 until 300. a calls at 500 and dials N1 (the
    last number its visit showed): N1's last lease (b's) ended 200 s ago, within the hold."""
    result = run(
        traffic(
            "a,0,100,100,https://shop.example/,,500",
            "b,200,300,300,https://shop.example/,,",
        ),
        pool=1,
    )
    assert result["by_kind"] == {"held": 1}
    assert (result["tracked"], result["correct"]) == (1, 0)


def test_an_empty_pool_shows_in_exhausted_and_untracked() -> None:
    """Pool of 1. a takes N1 at 0; b arrives at 10 while a is active: nothing to give, b waits
    on untracked and calls at 50 while still waiting (a leaves only at 100)."""
    result = run(
        traffic(
            "a,0,100,100,https://shop.example/,,",
            "b,10,90,90,https://shop.example/,,50",
        ),
        pool=1,
    )
    assert result["exhausted"] == 1
    assert result["by_kind"] == {"untracked": 1}
    assert result["untracked"] == 1
    assert result["pool_peak"] == 1


def test_a_returning_visitor_within_the_hold_gets_the_same_number() -> None:
    """Pool of 2. a gets N1 (0-100) and comes back at 200. With a 600 s hold N1 is still a's
    and comes back at once; with no hold the never-used N2 comes first. The call at 250 is a's
    own number either way (dynamic, correct)."""
    text = traffic(
        "a,0,100,100,https://shop.example/,,",
        "a,200,300,300,https://shop.example/,,250",
    )
    seen = {}
    for hold in (600, 0):
        run_ = Replay(parse_traffic(text), Scenario(SiteSettings(hold_s=hold), pool=2))
        result = run_.run().to_json()
        assert result["by_kind"] == {"dynamic": 1} and result["correct"] == 1
        seen[hold] = (run_.last_dynamic[0], run_.last_dynamic[1])
    assert seen[600][0] == seen[600][1]
    assert seen[0][0] != seen[0][1]


def test_a_call_after_the_hold_but_within_the_cool_down_is_cooled() -> None:
    """a holds N1 from 0 to 100; the hold is 600 s, so at 1000 (900 s after the release) N1 is
    past its hold but within 7 days: cooled, to a, who really called."""
    result = run(traffic("a,0,100,100,https://shop.example/,,1000"), pool=1, hold_s=600)
    assert result["by_kind"] == {"cooled": 1}
    assert (result["tracked"], result["correct"]) == (1, 1)


def test_a_call_after_the_cool_down_is_unattributed() -> None:
    """Cool-down of 0.01 day (864 s): a call 1000 s after the release fits no lease."""
    result = run(
        traffic("a,0,100,100,https://shop.example/,,1100"), pool=1, hold_s=0, cooldown_days=0.01
    )
    assert result["by_kind"] == {"unattributed": 1}
    assert result["tracked"] == 0


def test_an_idle_tab_left_open_is_revoked_and_a_call_then_dials_expired() -> None:
    """a is active 0-60 and leaves the tab open until 5000; idle timeout 300: the lease is
    revoked at 360 and the tab shows `expired` when a calls at 1000."""
    result = run(traffic("a,0,5000,60,https://shop.example/,,1000"), pool=1, idle_timeout_s=300)
    assert result["by_kind"] == {"expired": 1}


def test_traffic_outside_the_channels_sees_untracked_and_gets_no_lease() -> None:
    result = run(
        traffic(
            "a,0,100,100,https://shop.example/,,50",
            "b,0,100,100,https://shop.example/?utm_source=google&utm_medium=cpc,,50",
        ),
        pool=2,
        channels=("source=google",),
    )
    assert result["by_kind"] == {"untracked": 1, "dynamic": 1}
    assert result["leases"] == 1


def test_calls_before_the_warm_up_are_left_out_of_every_count() -> None:
    text = traffic(
        "a,0,100,100,https://shop.example/,,50",
        "b,10,90,90,https://shop.example/,,60",
        "c,1000,1100,1100,https://shop.example/,,1050",
    )
    rows = parse_traffic(text)
    result = replay(rows, Scenario(SiteSettings(), pool=1, warmup_s=500)).to_json()
    assert result["calls"] == 1 and result["by_kind"] == {"dynamic": 1}
    assert result["exhausted"] == 0
    assert result["leases"] == 1


def test_the_seed_policy_shows_initial_for_fifty_seconds() -> None:
    from calltracking.simulate.command import scenario_from

    rows = parse_traffic(traffic("a,0,200,200,https://shop.example/,,40", "b,0,200,200,,,60"))
    seed = replay(rows, scenario_from("seed", [], 2, 0.0)).to_json()
    assert seed["policy"] == "seed" and seed["settings"]["show_delay_s"] == 50
    assert seed["by_kind"] == {"initial": 1, "dynamic": 1}
    product = replay(rows, Scenario(SiteSettings(), pool=2, policy=Policy())).to_json()
    assert product["by_kind"] == {"dynamic": 2}
