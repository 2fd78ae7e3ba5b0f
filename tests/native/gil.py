"""A check that a native call lets other Python threads run while it works, with no timing.

The call runs in a worker thread that sets ``entered`` just before it, while the test thread waits
on that event. The interpreter's switch interval is raised to far longer than the test, so the worker
never gives the GIL up by force: the test thread can get it back only if the native call releases
it, and then it sees ``returned`` still unset. A call that held the GIL would return, run on to
``returned.set()`` and end its thread before the test thread could look.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def assert_call_releases_the_gil(call: Callable[[], object]) -> None:
    entered = threading.Event()
    returned = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        entered.set()
        try:
            call()
        except BaseException as exc:  # re-raised in the test thread
            failure.append(exc)
        finally:
            returned.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    worker = threading.Thread(target=work)
    try:
        worker.start()
        assert entered.wait(timeout=120)
        ran_during_call = not returned.is_set()
        worker.join(timeout=300)
    finally:
        sys.setswitchinterval(interval)
    assert not failure, failure
    assert not worker.is_alive()
    assert ran_during_call, "the test thread only ran after the native call returned: it held the GIL"
