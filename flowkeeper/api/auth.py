"""Who is calling: the bearer key, its role and tenant, and the identity a request acts as.

Roles (:class:`flowkeeper.api.keys.Role`):

- ``admin`` manages schemes and keys, and may do everything else in its tenant;
- ``service`` acts on processes and steps for any identity of its tenant;
- ``user`` is bound to one identity: it may create processes, read them, list and execute
  commands, always as that identity (naming another one is 403); it has no access to steps,
  schemes or keys.

Every scheme, process and step belongs to one tenant, and a key never sees another tenant's
objects: they answer 404, exactly as objects that do not exist.

The dependencies here are ``async def``: a key verified in the last few seconds is a look-up
in memory, so only a cache miss leaves the event loop (each trip to the thread pool costs a
thread wake-up and a GIL hand-off, more than the look-up itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from flowkeeper.api.keys import ApiKey, KeyStore, Role
from flowkeeper.api.problems import (
    FORBIDDEN,
    IDENTITY_NOT_PERMITTED,
    UNAUTHORIZED,
    ApiProblem,
)
from flowkeeper.engine import Engine

ADMIN, SERVICE, USER = Role.ADMIN, Role.SERVICE, Role.USER

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="fk_…",
    description="An API key made with `flowkeeper keys create` or `POST /api/v1/keys`.",
)


@dataclass(frozen=True)
class Principal:
    """The verified key of a request."""

    key_id: str
    tenant_id: str
    """``""`` is the default tenant."""
    role: str
    identity: str | None

    @property
    def tenant(self) -> str | None:
        """The tenant as the engine's API takes it (``None`` for the default tenant)."""
        return self.tenant_id or None

    def owns(self, tenant_id: str | None) -> bool:
        """Whether an object of ``tenant_id`` belongs to this key's tenant."""
        return (tenant_id or "") == self.tenant_id


async def get_engine(request: Request) -> Engine:
    """The engine the app serves."""
    engine: Engine = request.app.state.flowkeeper_engine
    return engine


async def get_keys(request: Request) -> KeyStore:
    """The key store of the app."""
    keys: KeyStore = request.app.state.flowkeeper_keys
    return keys


EngineDep = Annotated[Engine, Depends(get_engine)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(
    keys: KeyStore, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The caller's key, from ``Authorization: Bearer <key>``; 401 if missing or not valid."""
    if credentials is None:
        raise _unauthorized("send an API key as 'Authorization: Bearer <key>'")
    secret = credentials.credentials
    key: ApiKey | None = keys.cached(secret)
    if key is None:
        key = await run_in_threadpool(keys.verify, secret)
    if key is None:
        raise _unauthorized("the API key is unknown or revoked")
    return Principal(key.id, key.tenant_id, key.role, key.identity)


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's key, if its role is one of ``roles`` (403 otherwise)."""

    # One dependency (and the bearer scheme, which the OpenAPI document shows) rather than a
    # chain of them: FastAPI's cost per request grows with every dependency it solves.
    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        principal = await authenticate(request.app.state.flowkeeper_keys, credentials)
        if principal.role not in roles:
            raise ApiProblem(
                FORBIDDEN,
                f"a {principal.role} key may not do this; it needs the role {' or '.join(roles)}",
            )
        return principal

    return check


AnyKey = Annotated[Principal, Depends(require(ADMIN, SERVICE, USER))]
AdminOrService = Annotated[Principal, Depends(require(ADMIN, SERVICE))]
AdminOnly = Annotated[Principal, Depends(require(ADMIN))]


def acting_identity(principal: Principal, requested: str | None) -> str | None:
    """The identity a request acts as: the one named, else the key's own.

    A ``user`` key may only act as its own identity: naming another one is 403.
    """
    if requested is None:
        return principal.identity
    if principal.role == USER and requested != principal.identity:
        raise ApiProblem(
            IDENTITY_NOT_PERMITTED,
            f"this key acts as {principal.identity!r} only; it may not act as {requested!r}",
        )
    return requested
