"""The threads an app runs engine calls in: results, errors, the limit, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowkeeper.api import answers
from flowkeeper.api.answers import EngineThreads


def test_results_and_errors_reach_the_awaiting_task() -> None:
    class Refused(Exception):
        pass

    def refuse() -> None:
        raise Refused("no")

    async def main() -> None:
        threads = EngineThreads(2)
        assert await threads.run(lambda: threading.current_thread().name) != "MainThread"
        with pytest.raises(Refused, match="no"):
            await threads.run(refuse)
        assert await threads.run(lambda: 42) == 42

    asyncio.run(main())


def test_no_more_calls_run_at_once_than_there_are_threads() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    async def main() -> EngineThreads:
        threads = EngineThreads(3)
        await asyncio.gather(*(threads.run(call) for _ in range(12)))
        return threads

    threads = asyncio.run(main())
    assert most == 3
    assert threads._started == 3


def test_threads_start_only_as_calls_need_them() -> None:
    async def main() -> EngineThreads:
        threads = EngineThreads(40)
        for _ in range(20):
            await threads.run(lambda: None)  # one at a time: one thread does
        return threads

    assert asyncio.run(main())._started == 1


def test_a_cancelled_call_runs_to_its_end_and_the_threads_go_on() -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.05)
        finished.set()

    async def main() -> int:
        threads = EngineThreads(1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(threads.run(slow), 0.001)
        return await threads.run(lambda: 7)

    assert asyncio.run(main()) == 7
    assert finished.is_set()


def test_idle_threads_end_and_calls_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answers, "IDLE_THREAD_S", 0.05)

    async def main() -> EngineThreads:
        threads = EngineThreads(4)
        await asyncio.gather(*(threads.run(lambda: time.sleep(0.01)) for _ in range(4)))
        assert threads._started == 4
        await asyncio.sleep(0.3)
        assert threads._started == 0
        assert await asyncio.gather(*(threads.run(lambda: 5) for _ in range(3))) == [5, 5, 5]
        return threads

    assert asyncio.run(main())._started >= 1
