"""``overlapped``: a store's or recall's Redis reads run while its text is embedded, errors as in turn."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from mcp_gemma.aio import overlapped
from mcp_gemma.errors import InvalidInputError, StoreUnavailableError

pytestmark = pytest.mark.anyio


async def test_both_results_and_the_second_runs_while_the_first_waits() -> None:
    order: list[str] = []
    started = anyio.Event()

    async def first() -> int:
        with anyio.fail_after(5):
            await started.wait()  # only finishes once the second has started meanwhile
        order.append("first")
        return 1

    async def second() -> str:
        started.set()
        order.append("second")
        return "two"

    assert await overlapped(first(), second()) == (1, "two")
    assert order == ["second", "first"]


async def test_the_first_error_wins_and_cancels_the_second() -> None:
    cancelled = anyio.Event()

    async def first() -> int:
        await anyio.lowlevel.checkpoint()
        raise InvalidInputError("bad text")

    async def second() -> str:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "never"

    with pytest.raises(InvalidInputError, match="bad text"):
        await overlapped(first(), second())
    with anyio.fail_after(5):
        await cancelled.wait()


async def test_the_second_error_comes_once_the_first_is_done() -> None:
    done: list[str] = []

    async def first() -> int:
        await anyio.sleep(0.01)
        done.append("first")
        return 1

    async def second() -> str:
        raise StoreUnavailableError("redis down")

    with pytest.raises(StoreUnavailableError, match="redis down"):
        await overlapped(first(), second())
    assert done == ["first"]
