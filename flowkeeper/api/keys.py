"""API keys: create, list, revoke and verify the keys that callers of the HTTP API present.

A key is ``fk_`` followed by 43 random URL-safe characters (``secrets.token_urlsafe(32)``,
256 bits). Only its SHA-256 is stored, with its first characters (``prefix``) to tell keys
apart in listings: the secret is shown once, when it is made, and never again.

Verifying a key is one indexed look-up, and a verified key is remembered in memory for a few
seconds (``cache_seconds``, 5 by default), so a busy API does not query the database for every
request; a revoked key therefore stops working within that time on every server (at once on
the server that revoked it). This module needs no web framework: the command line uses it.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from flowkeeper.clock import utcnow
from flowkeeper.engine import Engine
from flowkeeper.errors import FlowkeeperError, InvalidArgument
from flowkeeper.steps.model import check_text
from flowkeeper.storage.database import translate_connection_errors
from flowkeeper.storage.tables import NAME_LENGTH, api_keys


class Role(StrEnum):
    """What a key may do (see :mod:`flowkeeper.api.auth` for each route's roles)."""

    ADMIN = "admin"
    """Schemes, keys, callbacks and everything else in its tenant."""
    SERVICE = "service"
    """Processes and steps, acting for any identity of its tenant."""
    USER = "user"
    """Processes, acting only as its own identity."""


ROLES = tuple(role.value for role in Role)

KEY_PREFIX = "fk_"
SHOWN_PREFIX_LENGTH = 10
"""How many characters of a key listings show (``fk_`` and 7 random ones)."""
DESCRIPTION_LENGTH = 1000
MAX_KEY_LENGTH = 200
"""Longer presented keys are refused without a database look-up."""
CACHE_ENTRIES = 10_000


class ApiKeyNotFound(FlowkeeperError, LookupError):
    """No API key has the given id (in the caller's tenant)."""


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: everything but its secret. ``tenant_id`` ``""`` is the default."""

    id: str
    tenant_id: str
    role: str
    identity: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    description: str | None

    @property
    def revoked(self) -> bool:
        """True once the key was revoked."""
        return self.revoked_at is not None


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``secret`` is the only copy of the key, shown once."""

    key: ApiKey
    secret: str


def hash_secret(secret: str) -> str:
    """The stored form of a key: the SHA-256 of its text, in hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """The API keys of one engine's database (table ``fk_api_keys``)."""

    def __init__(
        self,
        engine: Engine,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds < 0:
            raise InvalidArgument(f"cache_seconds must be >= 0, not {cache_seconds!r}")
        self._engine = engine
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()
        self._generation = 0
        """Revocations made here so far: a look-up that began before one is not cached."""
        self._schema_checked = False

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        if not self._schema_checked:
            self._engine.check_schema()
            self._schema_checked = True
        with translate_connection_errors(self._engine.url), self._engine.database.begin() as conn:
            yield conn

    def create(
        self,
        *,
        role: str,
        tenant_id: str = "",
        identity: str | None = None,
        description: str | None = None,
    ) -> NewKey:
        """Make a key; the returned ``secret`` is the key itself, which is not stored.

        A ``user`` key needs the ``identity`` it acts as; for other roles an identity is the
        default used when a request names none.
        """
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        check_text(tenant_id, "tenant_id", error=InvalidArgument)
        if not isinstance(tenant_id, str):
            raise InvalidArgument("tenant_id must be a string ('' is the default tenant)")
        check_text(identity, "identity", required=role == Role.USER, error=InvalidArgument)
        check_text(description, "description", limit=DESCRIPTION_LENGTH, error=InvalidArgument)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=secrets.token_hex(8),
            tenant_id=tenant_id,
            role=Role(role).value,
            identity=identity,
            prefix=secret[:SHOWN_PREFIX_LENGTH],
            created_at=utcnow(),
            revoked_at=None,
            description=description,
        )
        with self._begin() as conn:
            conn.execute(api_keys.insert(), {**key.__dict__, "key_hash": hash_secret(secret)})
        return NewKey(key, secret)

    def list(
        self, *, tenant_id: str | None = None, include_revoked: bool = True
    ) -> builtins.list[ApiKey]:
        """The keys (of one tenant if given), oldest first; never their secrets."""
        c = api_keys.c
        query = sa.select(api_keys).order_by(c.created_at, c.id)
        if tenant_id is not None:
            query = query.where(c.tenant_id == tenant_id)
        if not include_revoked:
            query = query.where(c.revoked_at.is_(None))
        with self._begin() as conn:
            return [_key(row) for row in conn.execute(query)]

    def get(self, key_id: str, *, tenant_id: str | None = None) -> ApiKey:
        """The key with this id (in ``tenant_id`` if given); ``ApiKeyNotFound`` otherwise."""
        with self._begin() as conn:
            return self._get(conn, key_id, tenant_id)

    def revoke(self, key_id: str, *, tenant_id: str | None = None) -> ApiKey:
        """Revoke a key (again: no change); it stops working within ``cache_seconds``."""
        with self._begin() as conn:
            key = self._get(conn, key_id, tenant_id)
            if key.revoked_at is None:
                now = utcnow()
                conn.execute(
                    api_keys.update()
                    .where(api_keys.c.id == key.id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                key = self._get(conn, key_id, tenant_id)
        with self._lock:
            self._generation += 1
            for digest in [d for d, (_, k) in self._cache.items() if k.id == key.id]:
                del self._cache[digest]
        return key

    def cached(self, secret: str) -> ApiKey | None:
        """The key ``secret`` is, if verified within ``cache_seconds``; no database access."""
        if not isinstance(secret, str) or len(secret) > MAX_KEY_LENGTH:
            return None
        return self._cached(hash_secret(secret))

    def _cached(self, digest: str) -> ApiKey | None:
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        return None

    def verify(self, secret: str) -> ApiKey | None:
        """The key whose text ``secret`` is, unless unknown or revoked (then None)."""
        if (
            not isinstance(secret, str)
            or not secret.startswith(KEY_PREFIX)
            or len(secret) > MAX_KEY_LENGTH
        ):
            return None
        digest = hash_secret(secret)
        known = self._cached(digest)
        if known is not None:
            return known
        generation = self._generation  # a revocation from now on must not be undone below
        with self._begin() as conn:
            row = conn.execute(
                sa.select(api_keys).where(
                    api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None)
                )
            ).first()
        if row is None:
            with self._lock:
                self._cache.pop(digest, None)
            return None
        key = _key(row)
        if self.cache_seconds > 0:
            with self._lock:
                if generation != self._generation:
                    return key  # read before a revocation here committed: answer, don't keep
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[digest] = (self._clock() + self.cache_seconds, key)
        return key

    def _get(self, conn: sa.Connection, key_id: str, tenant_id: str | None) -> ApiKey:
        check_text(key_id, "key id", required=True, limit=NAME_LENGTH, error=InvalidArgument)
        query = sa.select(api_keys).where(api_keys.c.id == key_id)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        row = conn.execute(query).first()
        if row is None:
            raise ApiKeyNotFound(f"no API key has the id {key_id!r}")
        return _key(row)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant_id=row.tenant_id,
        role=row.role,
        identity=row.identity,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        description=row.description,
    )
