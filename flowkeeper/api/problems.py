"""Errors as RFC 9457 problem details: every error the API returns has a stable ``type`` URI.

``ERROR_PROBLEMS`` maps every :class:`flowkeeper.FlowkeeperError` subclass to a status and a
type; ``API_PROBLEMS`` lists the problems of the HTTP layer itself (authentication, roles,
validation, routing). The body is ``application/problem+json``::

    {"type": "https://flowkeeper.dev/problems/process-not-found", "title": "Process not found",
     "status": 404, "detail": "no process has the id 'p-1'", "instance": "/api/v1/processes/p-1"}

No request gets a bare 500: validation errors are 422 problems, unknown routes 404, wrong
methods 405; an unexpected exception is logged and answered with an ``internal-error`` problem.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowkeeper import errors as fk
from flowkeeper.api.keys import ApiKeyNotFound
from flowkeeper.processes.callbacks import CallbackNotFound

PROBLEM_BASE = "https://flowkeeper.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_BODY_BYTES = 8 * 1024 * 1024
"""Requests announcing a larger body are refused with 413 before it is read."""

logger = logging.getLogger("flowkeeper.api")


@dataclass(frozen=True)
class Kind:
    """A kind of problem: its HTTP status, the last part of its type URI, and its title."""

    status: int
    slug: str
    title: str

    @property
    def type(self) -> str:
        """The problem's ``type`` URI."""
        return PROBLEM_BASE + self.slug


ERROR_PROBLEMS: dict[type[fk.FlowkeeperError], Kind] = {
    fk.FlowkeeperError: Kind(500, "internal-error", "Internal error"),
    fk.InvalidArgument: Kind(422, "invalid-argument", "Invalid argument"),
    fk.NaiveDatetimeError: Kind(422, "naive-datetime", "Time without a time zone"),
    fk.InvalidStep: Kind(422, "invalid-step", "Invalid step"),
    fk.StepAlreadyRegistered: Kind(503, "configuration-error", "Server misconfigured"),
    fk.ConfigurationError: Kind(503, "configuration-error", "Server misconfigured"),
    fk.InvalidDatabaseURL: Kind(503, "configuration-error", "Server misconfigured"),
    fk.DatabaseUnavailable: Kind(503, "database-unavailable", "Database unavailable"),
    fk.MigrationRequired: Kind(503, "migration-required", "Database schema not current"),
    fk.SchemaNewerThanCode: Kind(503, "schema-newer-than-code", "Database schema too new"),
    fk.StepNotFound: Kind(404, "step-not-found", "Step not found"),
    fk.SingletonExists: Kind(409, "singleton-exists", "Singleton step already ready"),
    fk.ConcurrencyError: Kind(409, "concurrency-conflict", "Changed concurrently"),
    fk.FailStep: Kind(500, "internal-error", "Internal error"),
    fk.SchemeError: Kind(422, "scheme-invalid", "Invalid scheme"),
    fk.ExpressionError: Kind(422, "expression-invalid", "Invalid expression"),
    fk.SchemeNotFound: Kind(404, "scheme-not-found", "Scheme not found"),
    fk.ProcessNotFound: Kind(404, "process-not-found", "Process not found"),
    fk.ProcessExists: Kind(409, "process-exists", "Process already exists"),
    fk.CommandNotAvailable: Kind(409, "command-not-available", "Command not available"),
    fk.InvalidCommandParameters: Kind(
        422, "invalid-command-parameters", "Invalid command parameters"
    ),
    fk.StateNotAvailable: Kind(422, "state-not-available", "State not available"),
    fk.ProcessFinished: Kind(409, "process-finished", "Process finished"),
    fk.ActionNotRegistered: Kind(503, "action-not-registered", "Action not registered"),
    fk.EndlessLoop: Kind(422, "endless-loop", "Endless loop of automatic transitions"),
    fk.SchemeUpdateError: Kind(409, "scheme-update-failed", "Scheme update not possible"),
    fk.FeatureNotSupported: Kind(422, "feature-not-supported", "Feature not supported"),
    fk.CallbackFailed: Kind(502, "callback-failed", "Callback failed"),
    ApiKeyNotFound: Kind(404, "api-key-not-found", "API key not found"),
    CallbackNotFound: Kind(404, "callback-not-found", "Callback not found"),
}
"""Status and type of every Flowkeeper error (a subclass not listed takes its base's)."""

BAD_REQUEST = Kind(400, "bad-request", "Request body cannot be parsed")
UNAUTHORIZED = Kind(401, "unauthorized", "Missing, unknown or revoked API key")
FORBIDDEN = Kind(403, "forbidden", "Not permitted for this key's role")
IDENTITY_NOT_PERMITTED = Kind(403, "identity-not-permitted", "Identity not permitted")
COMMAND_NOT_PERMITTED = Kind(403, "command-not-permitted", "Command not permitted")
NOT_FOUND = Kind(404, "not-found", "Not found")
METHOD_NOT_ALLOWED = Kind(405, "method-not-allowed", "Method not allowed")
PAYLOAD_TOO_LARGE = Kind(413, "payload-too-large", "Request body too large")
UNSUPPORTED_MEDIA_TYPE = Kind(415, "unsupported-media-type", "Unsupported media type")
VALIDATION_ERROR = Kind(422, "validation-error", "Invalid request")
INVALID_CURSOR = Kind(422, "invalid-cursor", "Invalid cursor")
INTERNAL_ERROR = ERROR_PROBLEMS[fk.FlowkeeperError]
NOT_READY = Kind(503, "not-ready", "Not ready")

API_PROBLEMS = (
    BAD_REQUEST,
    UNAUTHORIZED,
    FORBIDDEN,
    IDENTITY_NOT_PERMITTED,
    COMMAND_NOT_PERMITTED,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION_ERROR,
    INVALID_CURSOR,
    INTERNAL_ERROR,
    NOT_READY,
)
"""The problems of the HTTP layer itself."""


class ApiProblem(Exception):
    """Raise in a route to answer with a problem of ``kind``."""

    def __init__(
        self,
        kind: Kind,
        detail: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def kind_of(error: fk.FlowkeeperError) -> Kind:
    """The problem kind of a Flowkeeper error: its class's, else its nearest base's."""
    for cls in type(error).__mro__:
        kind = ERROR_PROBLEMS.get(cls)
        if kind is not None:
            return kind
    return INTERNAL_ERROR


def problem_of(error: fk.FlowkeeperError) -> ApiProblem:
    """The problem that answers a Flowkeeper error, with the fields some errors carry."""
    extra: dict[str, Any] = {}
    if isinstance(error, fk.SchemeError):
        extra["errors"] = list(error.errors)
    if isinstance(error, fk.SingletonExists):
        extra["names"] = list(error.names)
    if isinstance(error, fk.CallbackFailed):
        extra["callback"] = {"kind": error.kind, "name": error.name, "url": error.url}
    return ApiProblem(kind_of(error), str(error), extra=extra)


def problem_response(
    problem: ApiProblem, instance: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The ``application/problem+json`` response of a problem."""
    body: dict[str, Any] = {
        "type": problem.kind.type,
        "title": problem.kind.title,
        "status": problem.kind.status,
        "detail": problem.detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(problem.extra)
    return JSONResponse(
        body,
        status_code=problem.kind.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={**problem.headers, **(headers or {})},
    )


def _validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    found = []
    for item in error.errors():
        location = [part if isinstance(part, int) else str(part) for part in item.get("loc", ())]
        found.append({"loc": location, "msg": str(item.get("msg", "")), "type": item.get("type")})
    return found


async def _on_api_problem(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiProblem)
    return problem_response(error, request.url.path)


async def _on_flowkeeper_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, fk.FlowkeeperError)
    problem = problem_of(error)
    if problem.kind.status >= 500:
        logger.error("%s %s: %s: %s", request.method, request.url.path, type(error).__name__, error)
    if isinstance(error, fk.DatabaseUnavailable):
        # Its message names the database's host, port and user: for the log, not for callers.
        problem = problem_of(fk.DatabaseUnavailable(UNREACHABLE))
    return problem_response(problem, request.url.path)


UNREACHABLE = "the database is unavailable; the server's log says why"


async def _on_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    found = _validation_errors(error)
    detail = "; ".join(
        f"{'.'.join(map(str, item['loc'])) or 'request'}: {item['msg']}" for item in found[:5]
    )
    problem = ApiProblem(VALIDATION_ERROR, detail or "invalid request", extra={"errors": found})
    return problem_response(problem, request.url.path)


async def _on_http_exception(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    if isinstance(error.__cause__, BodyTooLarge):  # FastAPI reports it as a parsing error
        return problem_response(
            ApiProblem(PAYLOAD_TOO_LARGE, str(error.__cause__)), request.url.path
        )
    kinds = {400: BAD_REQUEST, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: PAYLOAD_TOO_LARGE}
    kind = kinds.get(error.status_code) or Kind(
        error.status_code, f"http-{error.status_code}", str(error.detail)
    )
    detail = str(error.detail)
    if error.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.url.path!r} (the API's routes are listed at /docs)"
    elif error.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path!r}"
    return problem_response(ApiProblem(kind, detail), request.url.path, error.headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error with a problem: Flowkeeper errors, validation, routing, the rest."""
    app.add_exception_handler(ApiProblem, _on_api_problem)
    app.add_exception_handler(fk.FlowkeeperError, _on_flowkeeper_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_middleware(ProblemGuard)


class BodyTooLarge(Exception):
    """A request body grew past the limit while it was read (sent without a length)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body may hold at most {limit} bytes")


class ProblemGuard:
    """ASGI middleware: refuse oversized bodies (413) and turn an unexpected exception into a
    logged ``internal-error`` problem instead of a bare 500."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            detail = f"the request body may hold at most {self.max_body_bytes} bytes"
            await _send_problem(send, ApiProblem(PAYLOAD_TOO_LARGE, detail), scope["path"])
            return
        started = False
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as error:
            if started:
                raise
            await _send_problem(send, ApiProblem(PAYLOAD_TOO_LARGE, str(error)), scope["path"])
        except Exception:
            logger.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if started:
                raise
            detail = "an unexpected error occurred; it was logged on the server"
            await _send_problem(send, ApiProblem(INTERNAL_ERROR, detail), scope["path"])


async def _send_problem(send: Send, problem: ApiProblem, instance: str) -> None:
    response = problem_response(problem, instance)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": bytes(response.body)})


def problem_json_schema() -> dict[str, Any]:
    """The JSON schema of a problem body (for the OpenAPI document)."""
    copy: dict[str, Any] = json.loads(json.dumps(_PROBLEM_SCHEMA))
    return copy


_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem; `type` is stable, `detail` is for humans.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {}},
        "names": {"type": "array", "items": {"type": "string"}},
        "callback": {
            "type": "object",
            "description": "The failed callback (502 callback-failed): its kind, name and URL.",
            "properties": {
                "kind": {"type": "string"},
                "name": {"type": "string"},
                "url": {"type": "string"},
            },
        },
    },
    "additionalProperties": True,
}
