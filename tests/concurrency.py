"""Running one call from many threads at once, for the tests that race them."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_together(call: Callable[[], object], count: int) -> list[object]:
    """Start ``call`` in ``count`` threads released together; return each result or exception."""
    barrier = threading.Barrier(count)
    results: list[object] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            result = call()
        except Exception as error:
            result = error
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
