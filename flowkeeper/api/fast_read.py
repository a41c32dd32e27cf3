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
from starlette.types import ASGIApp, Receive, Scope, Send

from flowkeeper.api.answers import EngineThreads
from flowkeeper.api.keys import KeyStore
from flowkeeper.api.routes.processes import read_process
from flowkeeper.engine import Engine
from flowkeeper.storage.tables import NAME_LENGTH

_DECLINED = "flowkeeper.fast_read_declined"
"""Scope key: this route has passed the request on, so it must not match it again."""


class FastProcessRead(Route):
    """The fast route for ``{prefix}/processes/{process_id}``; see the module's docstring."""

    def __init__(
        self,
        prefix: str,
        engine: Engine,
        keys: KeyStore,
        threads: EngineThreads,
        router: ASGIApp,
    ) -> None:
        """``router``: the app's own router, which answers what this route passes on."""
        super().__init__(
            f"{prefix}/processes/{{process_id}}",
            _ProcessReader(engine, keys, threads, router),
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

    def __init__(
        self, engine: Engine, keys: KeyStore, threads: EngineThreads, router: ASGIApp
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._threads = threads
        # Not scope["router"]: in an app mounted inside another, that is the outer router,
        # and the request would pass through this app's middleware a second time.
        self._router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        process_id: str = scope["path_params"]["process_id"]
        key = None
        if len(process_id) <= NAME_LENGTH and "\x00" not in process_id:
            secret = _bearer(scope)
            key = None if secret is None else self._keys.cached(secret)
        if key is None:
            scope[_DECLINED] = True
            await self._router(scope, receive, send)
            return
        engine, tenant = self._engine, key.tenant_id or None
        response = await self._threads.run(lambda: read_process(engine, process_id, tenant))
        await response(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, if the request has one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials if scheme.lower() == "bearer" and credentials else None
    return None
