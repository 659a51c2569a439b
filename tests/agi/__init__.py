"""Helpers shared by the FastAGI tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


async def settled(tasks: Sequence[asyncio.Task[T]], waiting: T) -> list[T]:
    """After ten turns of the loop (each task takes what was fed, then ends or waits for
    more): each task's result, or `waiting` for one still waiting (it is cancelled)."""
    for _ in range(10):
        await asyncio.sleep(0)
    results = []
    for task in tasks:
        if task.done():
            results.append(task.result())
        else:
            task.cancel()
            results.append(waiting)
    return results
