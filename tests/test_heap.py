import gc
from collections.abc import Iterator

import pytest

from calltracking.heap import YOUNG_THRESHOLD, settle_after_startup


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settling_freezes_what_lives_now_and_makes_young_passes_rarer(restored_gc: None) -> None:
    startup_object: list[object] = [[]]  # a container the collector tracks
    assert gc.is_tracked(startup_object)
    settle_after_startup()
    assert gc.get_freeze_count() > 0
    assert all(obj is not startup_object for obj in gc.get_objects())  # out of every pass
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


def test_garbage_made_after_settling_is_still_collected(restored_gc: None) -> None:
    settle_after_startup()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() > 0
