"""The store of callback registrations (``engine.callbacks``): adding, listing and removing a
tenant's callbacks, and the look-up the process registry makes for each action, condition and
rule, from a cache of each tenant's registrations that one thread at a time refreshes."""

from __future__ import annotations

import builtins
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import sqlalchemy as sa

from flowkeeper.clock import utcnow
from flowkeeper.errors import InvalidArgument
from flowkeeper.processes.callbacks.addresses import AddressPolicy
from flowkeeper.processes.callbacks.calls import CallbackRule, HttpCaller
from flowkeeper.processes.callbacks.registration import (
    DEFAULT_TIMEOUT_MS,
    KINDS,
    Callback,
    CallbackNotFound,
    callback_from_row,
    callback_row,
    checked_names,
    checked_timeout,
    checked_token,
    checked_url,
)
from flowkeeper.processes.registry import ActionFunction, ConditionFunction, Rule
from flowkeeper.processes.store import tenant_key
from flowkeeper.steps.model import check_text
from flowkeeper.storage.tables import callbacks

CACHE_ENTRIES = 10_000

Transaction = Callable[..., AbstractContextManager[sa.Connection]]


@dataclass
class _Entry:
    expires: float
    served: dict[tuple[str, str], Callback]


@dataclass
class _Flight:
    """One read of a tenant's registrations, which the threads that need them wait for."""

    generation: int
    done: threading.Event = field(default_factory=threading.Event)
    entry: _Entry | None = None
    """What the read found; None once done if it failed."""


class CallbackStore:
    """The callbacks of one engine (``engine.callbacks``): registration, and the look-up the
    process registry makes for each action, condition and rule of a tenant's process."""

    def __init__(
        self,
        transaction: Transaction,
        *,
        cache_seconds: float = 5.0,
        allowed_hosts: Iterable[str] = (),
        blocked_networks: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(cache_seconds, int | float) or cache_seconds < 0:
            raise InvalidArgument(f"cache_seconds must be >= 0, not {cache_seconds!r}")
        self._transaction = transaction
        self.cache_seconds = cache_seconds
        self.policy = AddressPolicy(allowed_hosts, blocked_networks)
        """Where callbacks may send requests (the engine's ``callback_allowed_hosts`` and
        ``callback_blocked_networks``)."""
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._generation = 0
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._caller = HttpCaller(self.policy)

    # -- registration --------------------------------------------------------------------------

    def add(
        self,
        url: str,
        *,
        tenant_id: str | None = None,
        token: str | None = None,
        actions: Iterable[str] = (),
        conditions: Iterable[str] = (),
        rules: Iterable[str] = (),
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> Callback:
        """Register a service for the tenant's processes (None: the default tenant).

        A name may be served by one callback of a tenant per kind: ``InvalidArgument`` if
        another one already serves it (remove that one first). ``InvalidArgument`` too for a
        URL with credentials (``user:password@``; send a ``token``), or whose host is an
        address the :attr:`policy` refuses (a literal address, or ``localhost``; other names
        are not resolved here but each time a connection is made).
        """
        tenant = tenant_key(tenant_id)
        check_text(tenant, "tenant_id", error=InvalidArgument)
        callback = Callback(
            id=secrets.token_hex(8),
            tenant_id=tenant,
            url=self.policy.check_url(checked_url(url)),
            token=checked_token(token),
            actions=checked_names(actions, "actions"),
            conditions=checked_names(conditions, "conditions"),
            rules=checked_names(rules, "rules"),
            timeout_ms=checked_timeout(timeout_ms),
            created_at=utcnow(),
        )
        if not (callback.actions or callback.conditions or callback.rules):
            raise InvalidArgument("a callback must serve at least one action, condition or rule")
        with self._transaction(None) as conn:
            for other in self._load(conn, tenant):
                for kind in KINDS:
                    taken = sorted(set(callback.names(kind)) & set(other.names(kind)))
                    if taken:
                        raise InvalidArgument(
                            f"callback {other.id} of this tenant already serves the {kind} "
                            f"{taken[0]!r}; remove it first (one service per name)"
                        )
            conn.execute(callbacks.insert(), callback_row(callback))
        self.invalidate(tenant)
        return callback

    def list(
        self, *, tenant_id: str | None = None, all_tenants: bool = False
    ) -> builtins.list[Callback]:
        """The tenant's callbacks (or every tenant's), oldest first."""
        with self._transaction(None, read_only=True) as conn:
            return self._load(conn, None if all_tenants else tenant_key(tenant_id))

    def get(self, callback_id: str, *, tenant_id: str | None = None) -> Callback:
        """The tenant's callback with this id; ``CallbackNotFound`` otherwise."""
        with self._transaction(None, read_only=True) as conn:
            return self._get(conn, callback_id, tenant_key(tenant_id))

    def remove(self, callback_id: str, *, tenant_id: str | None = None) -> Callback:
        """Remove the tenant's callback; its names go back to the Python ones at once here,
        within ``cache_seconds`` elsewhere."""
        tenant = tenant_key(tenant_id)
        with self._transaction(None) as conn:
            callback = self._get(conn, callback_id, tenant)
            c = callbacks.c
            conn.execute(callbacks.delete().where(c.tenant_id == tenant, c.id == callback.id))
        self.invalidate(tenant)
        return callback

    def invalidate(self, tenant_id: str | None = None) -> None:
        """Forget cached registrations (of one tenant, or all): the next use reads them."""
        with self._lock:
            self._generation += 1
            if tenant_id is None:
                self._cache.clear()
            else:
                self._cache.pop(tenant_key(tenant_id), None)

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._caller.close()

    def _get(self, conn: sa.Connection, callback_id: str, tenant: str) -> Callback:
        check_text(callback_id, "callback id", required=True, error=InvalidArgument)
        c = callbacks.c
        row = conn.execute(
            sa.select(callbacks).where(c.tenant_id == tenant, c.id == callback_id)
        ).first()
        if row is None:
            raise CallbackNotFound(f"no callback has the id {callback_id!r}")
        return callback_from_row(row)

    def _load(self, conn: sa.Connection, tenant: str | None) -> builtins.list[Callback]:
        c = callbacks.c
        query = sa.select(callbacks).order_by(c.created_at, c.id)
        if tenant is not None:
            query = query.where(c.tenant_id == tenant)
        return [callback_from_row(row) for row in conn.execute(query)]

    # -- the resolver the process registry consults ----------------------------------------------

    def action(self, tenant_id: str | None, name: str) -> ActionFunction | None:
        """The tenant's callback action ``name`` as an ``action(ctx, parameter)``, or None."""
        callback = self._find(tenant_id, "action", name)
        if callback is None:
            return None
        return lambda ctx, parameter: self._caller.action(callback, name, ctx, parameter)

    def condition(self, tenant_id: str | None, name: str) -> ConditionFunction | None:
        """The tenant's callback condition ``name``, or None."""
        callback = self._find(tenant_id, "condition", name)
        if callback is None:
            return None
        return lambda ctx, parameter: self._caller.condition(callback, name, ctx, parameter)

    def rule(self, tenant_id: str | None, name: str) -> Rule | None:
        """The tenant's callback rule ``name``, or None."""
        callback = self._find(tenant_id, "rule", name)
        return None if callback is None else CallbackRule(self._caller, callback, name)

    def _find(self, tenant_id: str | None, kind: str, name: str) -> Callback | None:
        tenant = tenant_key(tenant_id)
        entry = self._cache.get(tenant)
        if entry is None or entry.expires <= self._clock():
            entry = self._refresh(tenant, entry)
        return entry.served.get((kind, name))

    def _refresh(self, tenant: str, stale: _Entry | None) -> _Entry:
        """The tenant's registrations, read by one thread at a time (single flight): while one
        thread reads them, the others use the expired entry if there is one, else wait for
        what that thread reads."""
        with self._lock:
            flight = self._flights.get(tenant)
            if flight is not None and stale is not None:
                # Expired, not invalidated (an invalidation drops the entry): it is at most one
                # read older than cache_seconds, the staleness every other server accepts
                # anyway, so waiting for the read would only add its time to these calls.
                return stale
            if flight is not None and flight.generation == self._generation:
                joined = True
            else:
                # No entry: the first use, or a change made here since (``invalidate``), which
                # must be seen at once, so the others wait for this read instead of using what
                # was dropped. A read begun before the change is not joined: it may miss it.
                flight = self._flights[tenant] = _Flight(self._generation)
                joined = False
        if joined:
            flight.done.wait()  # the reading thread sets it however its read ends
            if flight.entry is not None:
                return flight.entry
            # Its read failed: read alone, so that this call fails (or not) with its own error.
            return self._read(tenant, flight.generation)
        try:
            flight.entry = self._read(tenant, flight.generation)
            return flight.entry
        finally:
            with self._lock:
                if self._flights.get(tenant) is flight:
                    del self._flights[tenant]
            flight.done.set()

    def _read(self, tenant: str, generation: int) -> _Entry:
        """Read the tenant's registrations; cache them unless invalidated since
        ``generation``."""
        # Its own short read: the call's transaction may be on the caller's connection, and a
        # rule is not handed one.
        with self._transaction(None, read_only=True) as conn:
            found = self._load(conn, tenant)
        served = {  # the oldest callback wins, should two ever serve one name
            (kind, name): cb for cb in reversed(found) for kind in KINDS for name in cb.names(kind)
        }
        entry = _Entry(self._clock() + self.cache_seconds, served)
        with self._lock:
            if generation == self._generation:  # not invalidated while it was read
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[tenant] = entry
        return entry
