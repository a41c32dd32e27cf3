"""``GET /api/v1/processes/{id}`` for callers whose key is already verified, without FastAPI's
per-request work.

Clients poll this read more than anything else. For each request FastAPI solves the route's
dependencies (the bearer scheme, the key check) and validates its path parameter, which cost
about 100 µs of CPU per read, a quarter of what the whole request costs in the server
(measured in-process; docs/benchmarks.md). This route, matched first, answers a ``GET`` only
when it can answer exactly as the FastAPI route would: a bearer key verified within the key
cache's lifetime, and a process id FastAPI would accept. Every other request (no key, a key
not in the cache, an id FastAPI refuses) goes on to the FastAPI route, which stays the OpenAPI
contract, verifies keys and writes every refusal.

Errors of the engine (another tenant's or an unknown process: 404) are raised here as there,
and the app's exception handlers answer both alike.
"""

from __future__ import annotations

from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from flowkeeper.api.answers import EngineThreads, answer
from flowkeeper.api.keys import KeyStore
from flowkeeper.api.schemas import ProcessOut
from flowkeeper.engine import Engine
from flowkeeper.storage.tables import NAME_LENGTH

_DECLINED = "flowkeeper.fast_read_declined"
"""Scope key: this route has passed the request on, so it must not match it again."""


class FastProcessRead(Route):
    """The fast route for ``{prefix}/processes/{process_id}``; see the module's docstring."""

    def __init__(self, prefix: str, engine: Engine, keys: KeyStore, threads: EngineThreads) -> None:
        super().__init__(
            f"{prefix}/processes/{{process_id}}",
            _ProcessReader(engine, keys, threads),
            methods=["GET"],
            include_in_schema=False,
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # Only GET: any other method meets the FastAPI routes and gets their answer (their
        # 405 and its Allow header included).
        if scope["type"] != "http" or scope["method"] != "GET" or _DECLINED in scope:
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is Match.FULL:
            child["route"] = self  # the request metrics label requests by route template
        return match, child


class _ProcessReader:
    """The ASGI app behind :class:`FastProcessRead`."""

    def __init__(self, engine: Engine, keys: KeyStore, threads: EngineThreads) -> None:
        self._engine = engine
        self._keys = keys
        self._threads = threads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        process_id: str = scope["path_params"]["process_id"]
        key = None
        if len(process_id) <= NAME_LENGTH and "\x00" not in process_id:
            secret = _bearer(scope)
            key = None if secret is None else self._keys.cached(secret)
        if key is None:
            scope[_DECLINED] = True
            await scope["router"](scope, receive, send)
            return
        tenant = key.tenant_id or None
        engine = self._engine
        response = await self._threads.run(
            lambda: answer(ProcessOut.of(engine.processes.get(process_id, tenant_id=tenant)))
        )
        await response(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, if the request has one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials if scheme.lower() == "bearer" and credentials else None
    return None
