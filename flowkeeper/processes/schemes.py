"""``engine.schemes``: saving scheme versions and reading them back.

Saved versions never change, so a loaded scheme is cached for the life of the engine.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from flowkeeper.clock import utcnow
from flowkeeper.errors import ConcurrencyError, InvalidArgument, SchemeNotFound
from flowkeeper.processes.model import Scheme
from flowkeeper.processes.records import SchemeInfo
from flowkeeper.processes.store import SchemeRows, tenant_key

Transaction = Callable[..., AbstractContextManager[sa.Connection]]

_SAVE_ATTEMPTS = 5


class SchemeStore:
    """Versions of process schemes in the database (``engine.schemes``)."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction
        self._rows = SchemeRows()
        self._cache: dict[tuple[str, str, int], Scheme] = {}
        self._lock = threading.Lock()

    def save(
        self,
        scheme: Scheme,
        *,
        tenant_id: str | None = None,
        connection: sa.Connection | None = None,
    ) -> int:
        """Validate ``scheme`` and store it as the newest version of ``scheme.name``.

        Returns the new version (1 for a new scheme). Older versions become obsolete;
        processes running on them keep them until ``engine.processes.update_scheme``.
        Raises :class:`flowkeeper.SchemeError` listing every problem, writing nothing.
        """
        if not isinstance(scheme, Scheme):
            raise InvalidArgument(
                f"save() takes a flowkeeper.Scheme, not {type(scheme).__name__}; read XML "
                "with fk.Scheme.from_xml(...) or a dict with fk.Scheme.from_dict(...)"
            )
        scheme.validate()
        definition = scheme.to_dict()
        tenant = tenant_key(tenant_id)
        for _ in range(_SAVE_ATTEMPTS):
            with self._transaction(connection) as conn:
                version = (self._rows.newest_version(conn, tenant, scheme.name) or 0) + 1
                if self._rows.insert(conn, tenant, scheme.name, version, definition, utcnow()):
                    break
        else:
            raise ConcurrencyError(
                f"scheme {scheme.name!r} was saved by others {_SAVE_ATTEMPTS} times while "
                "this save tried to; try again"
            )
        if connection is None:  # committed; a caller's transaction may yet roll back
            with self._lock:
                self._cache[(tenant, scheme.name, version)] = scheme
        return version

    def get(
        self,
        code: str,
        version: int | None = None,
        *,
        tenant_id: str | None = None,
        connection: sa.Connection | None = None,
    ) -> Scheme:
        """The scheme ``code`` (its newest version, or ``version``); ``SchemeNotFound`` if none."""
        with self._transaction(connection, read_only=True) as conn:
            return self.load(conn, tenant_key(tenant_id), code, version)[0]

    def newest_version(
        self, code: str, *, tenant_id: str | None = None, connection: sa.Connection | None = None
    ) -> int:
        """The newest version number of ``code``; ``SchemeNotFound`` if it was never saved."""
        with self._transaction(connection, read_only=True) as conn:
            return self.load(conn, tenant_key(tenant_id), code, None)[1]

    def list(
        self, *, tenant_id: str | None = None, connection: sa.Connection | None = None
    ) -> builtins.list[SchemeInfo]:
        """The newest version of every saved scheme, by name."""
        with self._transaction(connection, read_only=True) as conn:
            return [_info(row) for row in self._rows.listing(conn, tenant_key(tenant_id))]

    def versions(
        self, code: str, *, tenant_id: str | None = None, connection: sa.Connection | None = None
    ) -> builtins.list[SchemeInfo]:
        """Every saved version of ``code``, oldest first (empty if never saved)."""
        with self._transaction(connection, read_only=True) as conn:
            return [_info(row) for row in self._rows.listing(conn, tenant_key(tenant_id), code)]

    # -- for the runtime ---------------------------------------------------------------------------

    def load(
        self, conn: sa.Connection, tenant: str, code: str, version: int | None
    ) -> tuple[Scheme, int]:
        """The scheme and its version, in the caller's transaction."""
        if not isinstance(code, str) or not code:
            raise InvalidArgument(f"a scheme code must be a non-empty string, not {code!r}")
        if version is None:
            version = self._rows.newest_version(conn, tenant, code)
            if version is None:
                raise SchemeNotFound(
                    f"no scheme named {code!r} has been saved{_in_tenant(tenant)}; save one "
                    "with engine.schemes.save(...) or `flowkeeper schemes import`"
                )
        key = (tenant, code, version)
        cached = self._cache.get(key)
        if cached is not None:
            return cached, version
        definition = self._rows.definition(conn, tenant, code, version)
        if definition is None:
            raise SchemeNotFound(f"scheme {code!r} has no version {version}{_in_tenant(tenant)}")
        scheme = Scheme.from_dict(definition, validate=False)
        with self._lock:
            self._cache[key] = scheme
        return scheme, version


def _in_tenant(tenant: str) -> str:
    return f" in tenant {tenant!r}" if tenant else ""


def _info(row: Any) -> SchemeInfo:
    return SchemeInfo(
        code=row.code,
        version=row.version,
        obsolete=bool(row.obsolete),
        created_at=row.created_at,
        tenant_id=row.tenant_id or None,
    )
