"""The cache of tenants' callback registrations: one read at a time per tenant.

Reads of ``fk_callbacks`` are counted (and slowed, so that the threads overlap) with a
SQLAlchemy event on the engine's database. After an invalidation the threads that need the
registrations wait for one read; after an expiry they keep using the expired ones while it
runs; a read begun before a change is not used by calls that begin after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from tests.concurrency import run_together

THREADS = 8
URL = "http://callbacks.example/hook"


class Reads:
    """Counts the statements that read ``fk_callbacks``; each one, once it has run (its
    snapshot taken), waits the ``delay`` set when it began (``fail`` makes the next one raise
    instead)."""

    def __init__(self, engine: fk.Engine, delay: float) -> None:
        self.count = 0
        self.delay = delay
        self.fail = False
        self._lock = threading.Lock()
        self._this = threading.local()
        self._database = engine.database
        sa.event.listen(self._database, "before_cursor_execute", self._began)
        sa.event.listen(self._database, "after_cursor_execute", self._ran)

    def _began(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self._this.delay, self._this.fail = 0.0, False
        if "fk_callbacks" not in statement or not statement.lstrip().upper().startswith("SELECT"):
            return
        with self._lock:
            self.count += 1
            self._this.delay, self._this.fail = self.delay, self.fail
            self.fail = False

    def _ran(self, *args: Any) -> None:
        time.sleep(self._this.delay)
        if self._this.fail:
            raise RuntimeError("the database is having a bad day")

    def remove(self) -> None:
        sa.event.remove(self._database, "before_cursor_execute", self._began)
        sa.event.remove(self._database, "after_cursor_execute", self._ran)


@pytest.fixture
def reads(engine: fk.Engine) -> Iterator[Callable[[float], Reads]]:
    made: list[Reads] = []

    def make(delay: float) -> Reads:
        made.append(Reads(engine, delay))
        return made[-1]

    yield make
    for counter in made:
        counter.remove()


def test_concurrent_uses_after_an_invalidation_read_once(
    engine: fk.Engine, reads: Callable[[float], Reads]
) -> None:
    engine.callbacks.add(URL, tenant_id="acme", actions=["Stamp"])
    assert engine.callbacks.action("acme", "Stamp") is not None
    counted = reads(0.3)
    engine.callbacks.invalidate("acme")

    found = run_together(lambda: engine.callbacks.action("acme", "Stamp"), THREADS)
    assert counted.count == 1
    assert all(callable(action) for action in found), found

    # Cached now: no further read.
    assert engine.callbacks.action("acme", "Stamp") is not None
    assert counted.count == 1


def test_the_first_uses_read_once_too(engine: fk.Engine, reads: Callable[[float], Reads]) -> None:
    engine.callbacks.add(URL, tenant_id="acme", rules=["Approver"])
    with fk.Engine(engine.url) as other:  # nothing cached yet
        counted = Reads(other, 0.3)
        found = run_together(lambda: other.callbacks.rule("acme", "Approver"), THREADS)
        counted.remove()
    assert counted.count == 1
    assert all(rule is not None and not isinstance(rule, Exception) for rule in found), found


def test_after_an_expiry_the_others_use_the_expired_entry_while_one_reads(
    db_url: str,
) -> None:
    with fk.Engine(db_url, callback_cache_seconds=0.2) as engine:
        engine.callbacks.add(URL, tenant_id="acme", actions=["Stamp"])
        assert engine.callbacks.action("acme", "Stamp") is not None
        time.sleep(0.25)
        counted = Reads(engine, 0.5)
        reader = threading.Thread(target=engine.callbacks.action, args=("acme", "Stamp"))
        reader.start()
        while counted.count == 0:  # the reader is reading
            time.sleep(0.01)
        began = time.monotonic()
        assert engine.callbacks.action("acme", "Stamp") is not None
        assert time.monotonic() - began < 0.3  # did not wait for the read
        reader.join()
        counted.remove()
        assert counted.count == 1


def test_a_change_made_during_a_read_is_seen_by_the_calls_after_it(
    engine: fk.Engine, reads: Callable[[float], Reads]
) -> None:
    engine.callbacks.add(URL, tenant_id="acme", actions=["Stamp"])
    engine.callbacks.invalidate()
    counted = reads(0.5)
    early: list[object] = []
    reader = threading.Thread(target=lambda: early.append(engine.callbacks.action("acme", "New")))
    reader.start()
    while counted.count == 0:
        time.sleep(0.01)
    counted.delay = 0.0
    engine.callbacks.add(f"{URL}/new", tenant_id="acme", actions=["New"])  # invalidates
    assert engine.callbacks.action("acme", "New") is not None  # not the read begun before
    reader.join()
    assert early == [None]  # that read began before the change


def test_when_the_read_fails_the_waiting_threads_read_for_themselves(
    engine: fk.Engine, reads: Callable[[float], Reads]
) -> None:
    engine.callbacks.add(URL, tenant_id="acme", actions=["Stamp"])
    engine.callbacks.invalidate("acme")
    counted = reads(0.3)
    counted.fail = True

    found = run_together(lambda: engine.callbacks.action("acme", "Stamp"), THREADS)
    failed = [r for r in found if isinstance(r, Exception)]
    assert len(failed) == 1, found
    assert "bad day" in str(failed[0])
    assert sum(callable(r) for r in found) == THREADS - 1
    assert counted.count == THREADS  # one failed read, then each waiting thread's own
