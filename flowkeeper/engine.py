"""The :class:`Engine`: the one object an application holds."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL

from flowkeeper.errors import InvalidArgument
from flowkeeper.processes.callbacks import CallbackStore
from flowkeeper.processes.registry import ProcessRegistry
from flowkeeper.processes.runtime import ProcessRuntime
from flowkeeper.processes.schemes import SchemeStore
from flowkeeper.processes.store import TIMER_STEP
from flowkeeper.steps.model import QUEUE_NAMES, Retry, Search, Step, StepRecord
from flowkeeper.steps.operations import StepOperations
from flowkeeper.steps.registry import Implementation, StepRegistry
from flowkeeper.steps.worker import RunStats, StepObserver, WorkerPool, WorkerSettings
from flowkeeper.storage import migrate as migrations
from flowkeeper.storage.database import (
    READ_ONLY,
    create_database,
    describe,
    kind_of,
    resolve_url,
    translate_connection_errors,
)
from flowkeeper.storage.hot_path import hot_path_for
from flowkeeper.storage.notify import Waker
from flowkeeper.storage.notify import notify as notify_listeners
from flowkeeper.storage.step_queries import StepQueries

F = TypeVar("F", bound=Implementation)
G = TypeVar("G", bound=Callable[..., Any])

_OWN_TRANSACTION = "flowkeeper_own_transaction"
_WAKE_AFTER_COMMIT = "flowkeeper_wake_after_commit"


class Engine:
    """Flowkeeper on one database: register step implementations, add steps, run workers.

    ``url`` is a SQLAlchemy URL (``sqlite:///app.db``, ``postgresql://user@host/db``,
    ``mysql://user@host/db``); without one, ``$FLOWKEEPER_DATABASE_URL``, else
    ``sqlite:///flowkeeper.db``. Creating an engine does not connect; the first operation does,
    and checks that the schema is current (``engine.migrate()`` creates or upgrades it).

    ``lease``: how long a worker may hold a step without a heartbeat before another worker may
    claim it again (so also how soon a dead worker's steps run again).
    ``unknown_step_delay``: how long a ready step is postponed by a worker that has no
    implementation for its name.
    ``max_auto_transitions``: how many automatic transitions one process call may follow
    before it is stopped as an endless loop (``fk.EndlessLoop``, nothing saved).
    ``auto_scheme_update``: move a process to the newest version of its scheme before a
    command, timer or ``set_state`` when its activity is marked ``IsAutoSchemeUpdate``.
    ``callback_cache_seconds``: how long tenants' HTTP callback registrations are used
    before they are read again (so how soon a change made elsewhere is seen here).
    ``callback_allowed_hosts``: host names, addresses and CIDR networks that callbacks may
    reach even though they are special (``["127.0.0.1", "localhost", "::1/128"]``). By default
    callbacks may not send requests to loopback, link-local (the cloud metadata service
    169.254.169.254 among them), unspecified, multicast or reserved addresses: a tenant's
    admin could otherwise make this server POST to its own or its host's services. Private
    networks (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed. A listed name is allowed
    whatever it resolves to; ``["0.0.0.0/0", "::/0"]`` allows every address.
    ``callback_blocked_networks``: CIDR networks callbacks may not reach either (such as the
    private ones, ``["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]``, on a
    server whose tenants are not trusted); ``callback_allowed_hosts`` wins over them. Both
    are checked when a callback is added (its host if it is an address, or ``localhost``;
    names are not resolved then) and on every connection to a service (every address its
    host resolves to, before anything is sent).
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        lease: float | timedelta = 60.0,
        unknown_step_delay: float | timedelta = 3600.0,
        retention: timedelta | None = None,
        max_auto_transitions: int = 1000,
        auto_scheme_update: bool = False,
        callback_cache_seconds: float = 5.0,
        callback_allowed_hosts: Iterable[str] = (),
        callback_blocked_networks: Iterable[str] = (),
        **engine_options: Any,
    ) -> None:
        self.url = resolve_url(url)
        self.kind = kind_of(self.url)
        if retention is not None and (
            not isinstance(retention, timedelta) or retention <= timedelta(0)
        ):
            raise InvalidArgument(f"retention must be a positive timedelta, not {retention!r}")
        self.retention = retention
        """Done and failed steps older than this are deleted by running workers (None: kept)."""
        self._defaults = WorkerSettings(lease=lease, unknown_step_delay=unknown_step_delay)  # type: ignore[arg-type]
        self.database: sa.Engine = create_database(self.url, **engine_options)
        """The SQLAlchemy engine Flowkeeper uses; open your own transactions on it for
        ``connection=`` (the outbox pattern)."""
        self._queries = StepQueries(self.kind)
        self._hot = hot_path_for(self._queries)
        self._waker = Waker()
        self._registry = StepRegistry()
        self._steps = StepOperations(self._queries, self._hot, self._transaction, self._steps_added)
        self._schema_checked = False
        self._schema_lock = threading.Lock()
        self._pools: set[WorkerPool] = set()
        self._last_stats = RunStats()
        self._step_observers: list[StepObserver] = []
        if not isinstance(max_auto_transitions, int) or max_auto_transitions < 1:
            raise InvalidArgument(
                f"max_auto_transitions must be a positive integer, not {max_auto_transitions!r}"
            )
        self.callbacks = CallbackStore(
            self._transaction,
            cache_seconds=callback_cache_seconds,
            allowed_hosts=callback_allowed_hosts,
            blocked_networks=callback_blocked_networks,
        )
        """Tenants' HTTP callbacks (actions, conditions, rules): ``add``, ``list``, ``remove``."""
        self._process_registry = ProcessRegistry(self.callbacks)
        self.schemes = SchemeStore(self._transaction)
        """Scheme versions: ``save``, ``get``, ``list``, ``versions``."""
        self.processes = ProcessRuntime(
            self._transaction,
            self.schemes,
            self._process_registry,
            self._steps.add_steps,
            self,
            self.kind,
            max_auto_transitions=max_auto_transitions,
            auto_scheme_update=auto_scheme_update,
        )
        """Process instances: ``create``, ``get``, ``commands``, ``execute``, ``history`` …"""
        self._registry.register((TIMER_STEP,), self.processes.fire_timer)

    def __repr__(self) -> str:
        return f"<flowkeeper.Engine {describe(self.url)}>"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop any running workers and close every pooled connection."""
        self.stop()
        self.callbacks.close()
        self.database.dispose()

    # -- schema ------------------------------------------------------------------------------

    def migrate(self) -> tuple[str | None, str]:
        """Create or upgrade Flowkeeper's tables; running it again changes nothing.

        Returns the schema revision before and after.
        """
        with translate_connection_errors(self.url):
            result = migrations.upgrade(self.database)
        self._schema_checked = True
        return result

    def check_schema(self) -> None:
        """Raise :class:`flowkeeper.MigrationRequired` unless the schema is current."""
        with translate_connection_errors(self.url), self.database.connect() as connection:
            migrations.check_current(connection)
        self._schema_checked = True

    def _ensure_schema(self, connection: sa.Connection | None = None) -> None:
        if not self._schema_checked:
            with self._schema_lock:
                if self._schema_checked:
                    return
                if connection is None:
                    self.check_schema()
                else:
                    # On the caller's connection: a second one would wait for the write lock
                    # that the caller's own transaction holds on SQLite.
                    migrations.check_current(connection)
                    self._schema_checked = True

    @contextmanager
    def _transaction(
        self, connection: sa.Connection | None, read_only: bool = False
    ) -> Iterator[sa.Connection]:
        if connection is not None:
            if not isinstance(connection, sa.Connection):
                raise InvalidArgument(
                    f"connection must be a SQLAlchemy Connection, not {type(connection).__name__}"
                )
            self._ensure_schema(connection)
            yield connection
            return
        self._ensure_schema()
        with translate_connection_errors(self.url), self.database.connect() as own:
            if read_only:
                own.execution_options(**self._read_only_options(own))
            own.info[_OWN_TRANSACTION] = True
            try:
                with own.begin():
                    yield own
            finally:
                own.info.pop(_OWN_TRANSACTION, None)
                wake = own.info.pop(_WAKE_AFTER_COMMIT, False)
            if wake:
                self._waker.wake()

    def _read_only_options(self, connection: sa.Connection) -> dict[str, Any]:
        options: dict[str, Any] = {READ_ONLY: True}
        if self.kind == "postgresql" and connection.dialect.default_isolation_level == (
            "READ COMMITTED"
        ):
            # Each statement takes its own snapshot at READ COMMITTED, in a transaction or not:
            # without BEGIN and ROLLBACK a read is one round trip instead of three.
            options["isolation_level"] = "AUTOCOMMIT"
        return options

    def _steps_added(self, connection: sa.Connection) -> None:
        """Steps were added in ``connection``'s transaction: wake workers once they are visible.

        PostgreSQL delivers the NOTIFY at commit. Workers of this process are woken after our
        own transaction commits, or at once for a caller's (whose commit we do not see: they
        find its steps at their next poll at the latest).
        """
        notify_listeners(connection)
        if connection.info.get(_OWN_TRANSACTION):
            connection.info[_WAKE_AFTER_COMMIT] = True
        else:
            self._waker.wake()

    # -- step implementations ------------------------------------------------------------------

    def step(self, *names: str, retry: Retry | None = None) -> Callable[[F], F]:
        """Register the decorated function (sync or ``async``) as the implementation of ``names``.

        >>> engine = Engine("sqlite://")
        >>> @engine.step("v1/hello", "v0/hello", retry=Retry(max_attempts=3))
        ... def hello(step):
        ...     return step.done()
        """
        return self._registry.decorator(names, retry)

    def register_step(
        self, names: Iterable[str], function: Implementation, retry: Retry | None = None
    ) -> None:
        """Register ``function`` for ``names`` without a decorator."""
        self._registry.register(tuple(names), function, retry)

    # -- process actions, conditions and rules ---------------------------------------------------

    def action(self, name: str) -> Callable[[G], G]:
        """Register the decorated function as the scheme action ``name``.

        It is called as ``action(ctx, parameter)`` inside the call's transaction: ``ctx`` is
        an :class:`flowkeeper.ActionContext`, ``parameter`` the ActionParameter (JSON decoded
        when it is JSON). Changes to ``ctx.process.parameters`` are saved with the move.
        """
        return self._process_registry.action(name)

    def condition(self, name: str) -> Callable[[G], G]:
        """Register the decorated ``condition(ctx, parameter) -> bool`` as ``name``."""
        return self._process_registry.condition(name)

    def rule(self, name: str) -> Callable[[G], G]:
        """Register the decorated rule class (``check(process, identity, parameter)`` and
        optionally ``identities(process, parameter)``), object or ``check`` function."""
        return self._process_registry.rule(name)

    @property
    def step_names(self) -> list[str]:
        """The step names this engine has implementations for."""
        return list(self._registry.names())

    # -- step operations ---------------------------------------------------------------------------

    def add_steps(self, *steps: Step, connection: sa.Connection | None = None) -> list[int]:
        """Add steps to the ready queue, all or none; return their ids in the order given."""
        return self._steps.add_steps(steps, connection)

    def add_step(self, step: Step, *, connection: sa.Connection | None = None) -> int:
        """Add one step; return its id."""
        return self._steps.add_steps((step,), connection)[0]

    def add_step_if_absent(
        self, step: Step, match: Search, *, connection: sa.Connection | None = None
    ) -> int | None:
        """Add ``step`` unless a ready step matches ``match``; return the new id or None."""
        return self._steps.add_step_if_absent(step, match, connection)

    def search(
        self,
        search: Search | None = None,
        queues: Iterable[str] = QUEUE_NAMES,
        limit: int | None = 100,
        *,
        connection: sa.Connection | None = None,
    ) -> dict[str, list[StepRecord]]:
        """Steps matching ``search`` in each of ``queues``, oldest first, ``limit`` per queue."""
        return self._steps.search(search or Search(), queues, limit, connection)

    def get_step(self, step_id: int, *, connection: sa.Connection | None = None) -> StepRecord:
        """The step with this id, from whichever queue holds it (``StepNotFound`` if none)."""
        return self._steps.get(step_id, connection)

    def activate(
        self, step_id: int, args: Any = None, *, connection: sa.Connection | None = None
    ) -> bool:
        """Make a ready step due now with ``args``; False if it is running or no longer ready."""
        return self._steps.activate(step_id, args, connection)

    def reexecute(
        self,
        search: Search,
        queues: Iterable[str] = ("failed",),
        *,
        connection: sa.Connection | None = None,
    ) -> list[int]:
        """Copy matching done/failed steps back to ready, as new steps; return the new ids."""
        return self._steps.reexecute(search, queues, connection)

    def fail_steps(
        self,
        search: Search,
        description: str | None = None,
        *,
        connection: sa.Connection | None = None,
    ) -> list[int]:
        """Move matching ready steps to the failed queue; return their ids."""
        return self._steps.fail_steps(search, description, connection)

    def prune(self, older_than: timedelta, queues: Iterable[str] = ("done",)) -> dict[str, int]:
        """Delete done (and, if asked, failed) steps created more than ``older_than`` ago.

        Returns how many were deleted per queue. Workers do this on their own when the engine
        has a ``retention``.
        """
        return self._steps.prune(older_than, queues)

    def _prune_by_retention(self) -> dict[str, int]:
        assert self.retention is not None
        return self.prune(self.retention, ("done", "failed"))

    def count(
        self, search: Search | None = None, *, connection: sa.Connection | None = None
    ) -> dict[str, int]:
        """How many steps (matching ``search``) each queue holds."""
        return self._steps.count(search, connection)

    # -- workers -----------------------------------------------------------------------------------

    def run(
        self,
        workers: int = 8,
        until_idle: bool = False,
        *,
        batch_size: int = 100,
        max_poll_interval: float = 1.0,
        handle_signals: bool = True,
    ) -> RunStats:
        """Run ``workers`` worker threads in this thread until stopped.

        ``until_idle=True`` returns once no step is due now (future steps stay). SIGINT and
        SIGTERM (when called from the main thread) stop it gracefully: running steps finish
        and are recorded, claimed steps not yet started are released.
        """
        self._ensure_schema()
        settings = WorkerSettings(
            workers=workers,
            batch_size=batch_size,
            lease=self._defaults.lease,
            unknown_step_delay=self._defaults.unknown_step_delay,
            max_poll_interval=max_poll_interval,
        )
        pool = WorkerPool(
            self.database,
            self._queries,
            self._hot,
            self._registry,
            self._steps.insert,
            self._waker,
            settings,
            housekeeping=None if self.retention is None else self._prune_by_retention,
            observers=self._step_observers,
        )
        self._pools.add(pool)
        self._last_stats = pool.stats
        try:
            with translate_connection_errors(self.url):
                return pool.run(until_idle=until_idle, handle_signals=handle_signals)
        finally:
            self._pools.discard(pool)

    def observe_steps(self, observer: StepObserver) -> None:
        """Call ``observer(name, queue, seconds)`` after each step this engine's workers run
        (the queue its outcome sends it to: ``done``, ``failed`` or ``ready``). It runs on
        the worker thread, so it must be quick; an exception it raises is logged."""
        self._step_observers.append(observer)

    @property
    def stats(self) -> RunStats:
        """Counters of the running :meth:`run` (or of the last one), updated as steps finish."""
        return self._last_stats

    def stop(self) -> None:
        """Ask every running :meth:`run` to stop gracefully (safe from any thread)."""
        for pool in list(self._pools):
            pool.stop()
