"""The two busiest requests, for callers whose key is already verified, without FastAPI's
per-request work:

- ``GET /api/v1/processes/{id}`` (clients poll it more than anything else);
- ``POST /api/v1/processes/{id}/commands/{command}``.

For each request FastAPI solves the route's dependencies (the bearer scheme, the key check,
the engine), validates its path parameters and its body: about 100 µs of CPU per read and
250 µs per command, a fifth to a quarter of what the whole request costs in the server
(measured in-process; docs/benchmarks.md). These routes, matched first, answer only what they
can answer exactly as the FastAPI routes would: a bearer key verified within the key cache's
lifetime, path parameters FastAPI would accept and, for a command, no body or a JSON body that
the same model accepts. Every other request (no key, a key not in the cache, a parameter or
body FastAPI refuses) goes on, body and all, to the FastAPI route, which stays the OpenAPI
contract, verifies keys and writes every refusal.

Errors of the engine and of the request (another tenant's or an unknown process: 404; an
identity a ``user`` key may not act as: 403; a command not available: 409) are raised here as
there, and the app's exception handlers answer both alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowkeeper.api.answers import EngineThreads
from flowkeeper.api.auth import Principal, acting_identity
from flowkeeper.api.keys import KeyStore
from flowkeeper.api.routes.processes import execute, read_process
from flowkeeper.api.schemas import CommandExecute
from flowkeeper.engine import Engine
from flowkeeper.storage.tables import NAME_LENGTH

_DECLINED = "flowkeeper.fast_route_declined"
"""Scope key: a fast route has passed the request on, so none may match it again."""

Work = Callable[[], Response]
"""The engine calls and the encoding of the answer, run in the app's threads."""


class FastRoute(Route):
    """A route matched before the FastAPI routes that answers ``method`` requests to ``path``
    when :meth:`work` can, and passes every other request on to the app's own router."""

    def __init__(
        self,
        path: str,
        method: str,
        engine: Engine,
        keys: KeyStore,
        threads: EngineThreads,
        router: ASGIApp,
    ) -> None:
        """``router``: the app's own router, which answers what this route passes on."""
        super().__init__(path, _Endpoint(self), methods=[method], include_in_schema=False)
        self.method = method
        self.engine = engine
        self._keys = keys
        self._threads = threads
        # Not scope["router"]: in an app mounted inside another, that is the outer router,
        # and the request would pass through this app's middleware a second time.
        self._router = router

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # Only its method: any other meets the FastAPI routes and gets their answer (their
        # 405 and its Allow header included).
        if scope["type"] != "http" or scope["method"] != self.method or _DECLINED in scope:
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is Match.FULL:
            child["route"] = self  # the request metrics label requests by route template
        return match, child

    def work(
        self, scope: Scope, principal: Principal, params: dict[str, str], body: bytes
    ) -> Work | None:
        """What answers the request, or ``None`` to leave it to the FastAPI route."""
        raise NotImplementedError

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request, or pass it on."""
        params: dict[str, str] = scope["path_params"]
        principal = None
        if all(len(value) <= NAME_LENGTH and "\x00" not in value for value in params.values()):
            principal = self._principal(scope)
        body: bytes | None = b""
        messages: list[Message] = []
        if principal is not None and self.method != "GET":
            body, messages = await _read_body(receive)
        work = None
        if principal is not None and body is not None:
            work = self.work(scope, principal, params, body)
        if work is None:
            scope[_DECLINED] = True
            await self._router(scope, _replay(messages, receive), send)
            return
        response = await self._threads.run(work)
        await response(scope, receive, send)

    def _principal(self, scope: Scope) -> Principal | None:
        """The caller, if the request has a bearer key the cache holds as verified."""
        scheme, _, secret = (_header(scope, b"authorization") or "").partition(" ")
        key = self._keys.cached(secret) if scheme.lower() == "bearer" and secret else None
        return None if key is None else Principal(key.id, key.tenant_id, key.role, key.identity)


class _Endpoint:
    """The route's ASGI app (Starlette would call a bound method with a ``Request``)."""

    def __init__(self, route: FastRoute) -> None:
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._route.answer(scope, receive, send)


class FastProcessRead(FastRoute):
    """``GET {prefix}/processes/{process_id}``: any role (the FastAPI route takes any key)."""

    def __init__(self, prefix: str, *args: Any) -> None:
        super().__init__(f"{prefix}/processes/{{process_id}}", "GET", *args)

    def work(
        self, scope: Scope, principal: Principal, params: dict[str, str], body: bytes
    ) -> Work | None:
        engine, process_id, tenant = self.engine, params["process_id"], principal.tenant
        return lambda: read_process(engine, process_id, tenant)


class FastCommand(FastRoute):
    """``POST {prefix}/processes/{process_id}/commands/{command}``: any role, as the identity
    the body names or the key's own."""

    def __init__(self, prefix: str, *args: Any) -> None:
        super().__init__(f"{prefix}/processes/{{process_id}}/commands/{{command}}", "POST", *args)

    def work(
        self, scope: Scope, principal: Principal, params: dict[str, str], body: bytes
    ) -> Work | None:
        asked = _command_body(_header(scope, b"content-type"), body) if body else CommandExecute()
        if asked is None:
            return None
        # Checked here as there: a user key naming another identity is 403.
        identity = acting_identity(principal, asked.identity)
        engine, app, tenant = self.engine, scope["app"], principal.tenant
        process_id, command, parameters = params["process_id"], params["command"], asked.parameters
        return lambda: execute(engine, app, process_id, command, identity, parameters, tenant)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header ``name`` (lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _command_body(content_type: str | None, body: bytes) -> CommandExecute | None:
    """The body as FastAPI would read it, if it is JSON (by its content type) that the model
    accepts; ``None`` otherwise."""
    if content_type is None or content_type.partition(";")[0].strip().lower() != "application/json":
        return None
    try:
        # json.loads, not pydantic's parser: FastAPI parses with json and then validates.
        value = json.loads(body)
        return CommandExecute.model_validate(value) if isinstance(value, dict) else None
    except (ValueError, RecursionError, ValidationError):
        return None


async def _read_body(receive: Receive) -> tuple[bytes | None, list[Message]]:
    """The whole request body (``None`` if the client went away first), and the messages it
    came in (to hand on if declined)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive``, giving ``messages`` (already read from it) first."""
    if not messages:
        return receive
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
