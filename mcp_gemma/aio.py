"""Small asyncio helpers shared by the services."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")


async def overlapped(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both results, ``second`` running while ``first`` is awaited (Redis reads while a text is
    embedded in a worker thread: their round trips off the call). ``first``'s error wins, as if they
    ran in turn, and cancels ``second``; ``second``'s error comes once ``first`` is done."""
    task = asyncio.ensure_future(second)
    try:
        a = await first
    except BaseException:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: never logged
        raise
    return a, await task
