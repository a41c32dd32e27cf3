"""Answering from route functions that call the synchronous engine.

The process routes, the busy ones, are ``async def`` and hand the engine calls *and* the
encoding of the answer to the app's threads in one trip (:func:`off_loop`), returning a
finished :class:`JsonAnswer`. A plain ``def`` route would cost FastAPI two trips through
anyio's thread pool (the route, then validating and encoding its return value), and under
load each trip (a thread wake-up, a GIL hand-off, anyio's limiter and cancel scopes) costs
more than the work itself. :class:`EngineThreads` is the least a trip can cost: a queue, and
one ``call_soon_threadsafe`` back (``run_in_executor`` adds a ``concurrent.futures.Future``
with its condition variable and a chain of callbacks: 8 % more CPU per read, measured
in-process).

The routes still declare their ``response_model``: it is the OpenAPI contract, and the
schemathesis suite checks the answers against it. The other routes (schemes, steps, keys,
callbacks) are plain ``def``, run in anyio's thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, TypeAdapter
from starlette.responses import Response

T = TypeVar("T")

IDLE_THREAD_S = 30.0
"""A thread that had nothing to do for this long ends (another starts when calls need it)."""


class JsonAnswer(Response):
    """A JSON answer whose body is already encoded."""

    media_type = "application/json"


def answer(value: BaseModel, status_code: int = 200) -> JsonAnswer:
    """``value`` as a JSON answer."""
    return JsonAnswer(value.model_dump_json(), status_code=status_code)


_ADAPTERS: dict[type[BaseModel], TypeAdapter[list[BaseModel]]] = {}


def answer_list(model: type[BaseModel], values: Sequence[BaseModel]) -> JsonAnswer:
    """A list of ``model`` values as a JSON answer."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
    return JsonAnswer(adapter.dump_json(list(values)))


class EngineThreads:
    """At most ``size`` daemon threads, started as needed and ending when idle, that run one
    app's engine calls.

    Each call holds a database connection while it runs, so size the engine's pool to match.
    A call whose request was cancelled (the client went away) still runs to its end: it is
    one transaction, and its result is dropped.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Any, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0
        self._waiting = 0

    async def run(self, work: Callable[[], T]) -> T:
        """``work()``, run in one of the threads; its exception is raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._waiting += 1
            start = self._waiting > self._idle and self._started < self.size
            if start:
                self._started += 1
        if start:
            name = f"flowkeeper-api-{self._started}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()
        self._calls.put((work, loop, future))
        return await future

    def _serve(self) -> None:
        with self._lock:
            self._idle += 1
        while True:
            try:
                work, loop, future = self._calls.get(timeout=IDLE_THREAD_S)
            except queue.Empty:
                with self._lock:
                    # Leave only if the threads still idle cover every call handed over.
                    if self._waiting <= self._idle - 1:
                        self._idle -= 1
                        self._started -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
                self._waiting -= 1
            try:
                outcome = (True, work())
            except BaseException as error:  # raised again in the awaiting task
                outcome = (False, error)
            with self._lock:
                self._idle += 1  # before the answer: its task may hand over more work at once
            with contextlib.suppress(RuntimeError):  # a closed event loop: nobody waits
                loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.cancelled():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def off_loop(request: Request, work: Callable[[], T]) -> T:
    """Run ``work`` (engine calls and the encoding of the answer) in the app's threads."""
    threads: EngineThreads = request.app.state.flowkeeper_threads
    return await threads.run(work)
