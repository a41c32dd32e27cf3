"""The FastAPI application: routes under ``/api/v1``, health checks, problems, the OpenAPI contract.

The engine's API is synchronous: routes run it off the event loop, each call one database
transaction (see :mod:`flowkeeper.api.answers`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

import flowkeeper
from flowkeeper.api import DEFAULT_THREADS
from flowkeeper.api import callbacks as callback_routes
from flowkeeper.api.answers import EngineThreads
from flowkeeper.api.auth import EngineDep
from flowkeeper.api.fast_routes import FastCommand, FastProcessRead
from flowkeeper.api.keys import KeyStore
from flowkeeper.api.metrics import install_metrics
from flowkeeper.api.problems import (
    NOT_READY,
    PROBLEM_MEDIA_TYPE,
    UNREACHABLE,
    ApiProblem,
    install_problem_handlers,
    problem_json_schema,
)
from flowkeeper.api.routes import keys as key_routes
from flowkeeper.api.routes import processes, schemes, steps
from flowkeeper.api.schemas import Health, Ready
from flowkeeper.engine import Engine
from flowkeeper.errors import DatabaseUnavailable, FlowkeeperError, InvalidArgument
from flowkeeper.storage.migrate import HEAD_REVISION

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

_ERRORS = {
    400: "The request body cannot be parsed (e.g. JSON nested too deeply).",
    401: "No API key, or an unknown or revoked one.",
    403: "The key's role or identity does not permit this.",
    404: "No such object in the key's tenant.",
    409: "The object's current state does not allow this (or it changed concurrently).",
    413: "The request body is too large.",
    422: "The request is malformed or its values are not acceptable.",
    500: "An unexpected error (logged on the server).",
    502: "A tenant's callback service failed (no answer in time, an error status, or an "
    "answer of the wrong shape); nothing was changed.",
    503: "The database is unavailable, its schema is not current, or the server lacks code "
    "the scheme needs.",
}
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text} for status, text in _ERRORS.items()
}

DESCRIPTION = """\
Flowkeeper's HTTP API: scheme versions, process instances (commands, states, history) and
durable steps, for many tenants.

Authenticate with `Authorization: Bearer <key>` (keys are made with `flowkeeper keys create`
or `POST /api/v1/keys`). Errors are RFC 9457 problem details (`application/problem+json`)
whose `type` URI is stable; `detail` is for humans.
"""


def create_app(
    engine: Engine,
    *,
    key_cache_seconds: float = 5.0,
    keys: KeyStore | None = None,
    metrics: bool = True,
    threads: int = DEFAULT_THREADS,
) -> FastAPI:
    """The HTTP API over ``engine``, as a FastAPI app (mount it in your own, or serve it).

    ``key_cache_seconds``: how long a verified API key is trusted without asking the
    database again (so how long a revoked key may still work). ``metrics``: serve
    ``GET /metrics`` (Prometheus, no authentication; see :mod:`flowkeeper.api.metrics`).
    ``threads``: how many engine calls run at once (each holds a database connection while it
    runs, so give the engine a pool at least this big); more requests wait their turn.
    """
    if not isinstance(engine, Engine):
        raise InvalidArgument(
            f"create_app() takes a flowkeeper.Engine, not {type(engine).__name__}"
        )
    app = FastAPI(
        title="Flowkeeper",
        version=flowkeeper.__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    if not isinstance(threads, int) or threads < 1:
        raise InvalidArgument(f"threads must be a positive integer, not {threads!r}")
    app.state.flowkeeper_engine = engine
    app.state.flowkeeper_threads = EngineThreads(threads)
    app.state.flowkeeper_keys = keys or KeyStore(engine, cache_seconds=key_cache_seconds)
    # Routes are matched in order: the busiest first.
    shared = (engine, app.state.flowkeeper_keys, app.state.flowkeeper_threads, app.router)
    app.router.routes[:0] = [FastProcessRead(API_PREFIX, *shared), FastCommand(API_PREFIX, *shared)]
    for module in (processes, schemes, steps, key_routes, callback_routes):
        app.include_router(module.router, prefix=API_PREFIX, responses=COMMON_RESPONSES)
    app.include_router(_health_router())
    install_problem_handlers(app)
    if metrics:
        install_metrics(app, engine)  # after the problem handlers: it times what they answer

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health, summary="Alive")
    def healthz() -> Health:
        """The server answers (no authentication, no database)."""
        return Health(status="ok")

    @router.get(
        "/readyz",
        response_model=Ready,
        summary="Ready",
        responses={503: {"description": "The database is unreachable or not migrated."}},
    )
    def readyz(engine: EngineDep) -> Ready:
        """The database answers and its schema is current (no authentication)."""
        try:
            engine.check_schema()
        except DatabaseUnavailable as error:
            logger.error("not ready: %s", error)  # names the database: for the log only
            raise ApiProblem(NOT_READY, UNREACHABLE) from None
        except FlowkeeperError as error:
            raise ApiProblem(NOT_READY, str(error)) from None
        return Ready(status="ready", revision=HEAD_REVISION)

    return router


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with every error response as an ``application/problem+json``
    Problem."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = problem_json_schema()
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = dict(problem)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return document
