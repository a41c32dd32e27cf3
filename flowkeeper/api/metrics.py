"""``GET /metrics``: what the server and its workers do, in Prometheus' text format.

It answers without authentication, like ``/healthz``, so scrapers need no API key; it holds
only aggregates (no tenant, process, step or key ids; requests are labelled by their route's
template, never the path). Turn it off with ``create_app(engine, metrics=False)``, or keep it
from the public at the proxy, if even those should stay private.

====================================================  =========  ==============================
metric                                                type       what
====================================================  =========  ==============================
``flowkeeper_steps{queue}``                           gauge      steps in the ready, done and
                                                                 failed queues, every tenant's
                                                                 (read at most every 5 s)
``flowkeeper_step_executions_total{name,outcome}``    counter    steps this process's workers
                                                                 ran; ``outcome`` ``done``,
                                                                 ``failed`` or ``rescheduled``
                                                                 (retried after an exception,
                                                                 or ``step.rerun()``)
``flowkeeper_step_duration_seconds{name}``            histogram  how long those steps ran
``flowkeeper_commands_total{executed}``               counter    commands executed through the
                                                                 API; ``executed="false"`` when
                                                                 no transition's conditions held
``flowkeeper_http_request_duration_seconds``          histogram  requests by ``method``,
``{method,route,status}``                                        ``route`` and ``status``
====================================================  =========  ==============================

Counters start at zero when the server starts. Step executions count the workers running in
this process (``flowkeeper serve``), not those of other processes. The format is written here
rather than with ``prometheus_client``: it is a few lines of text, and a process-wide registry
would mix the metrics of several apps in one process.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowkeeper.engine import Engine
from flowkeeper.errors import FlowkeeperError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
QUEUE_CACHE_SECONDS = 5.0
UNMATCHED = "unmatched"
"""The ``route`` of requests that matched no route (404s): never the path itself."""
OUTCOMES = {"done": "done", "failed": "failed", "ready": "rescheduled"}
_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")

logger = logging.getLogger("flowkeeper.api")

Labels = tuple[str, ...]


class Counter:
    """A counter family: one value per combination of label values."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        self.name, self.help, self.labels = name, help, tuple(labels)
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        """Add ``amount`` to the counter of these label values."""
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: Labels) -> float:
        """The counter of these label values (0 if never counted)."""
        return self._values.get(labels, 0.0)

    def samples(self) -> list[str]:
        """The family's sample lines."""
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labels, key)} {_number(v)}" for key, v in items]


class Histogram:
    """A histogram family: cumulative buckets, sum and count per combination of labels."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.help, self.labels = name, help, tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def observe(self, labels: Labels, value: float) -> None:
        """Count one observation of ``value`` (seconds) under these label values."""
        with self._lock:
            counts = self._counts.get(labels)
            if counts is None:
                counts = self._counts[labels] = [0] * (len(self.buckets) + 1)
                self._sums[labels] = 0.0
            index = next((i for i, b in enumerate(self.buckets) if value <= b), len(self.buckets))
            counts[index] += 1
            self._sums[labels] += value

    def count(self, labels: Labels) -> int:
        """How many observations these label values have."""
        return sum(self._counts.get(labels, ()))

    def samples(self) -> list[str]:
        """The family's sample lines: ``_bucket`` (cumulative), ``_sum`` and ``_count``."""
        with self._lock:
            items = sorted(
                (key, list(counts), self._sums[key]) for key, counts in self._counts.items()
            )
        lines = []
        for key, counts, total in items:
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                labels = _labels((*self.labels, "le"), (*key, _number(bound)))
                lines.append(f"{self.name}_bucket{labels} {running}")
            lines.append(f"{self.name}_sum{_labels(self.labels, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.labels, key)} {running}")
        return lines


class Metrics:
    """The metrics of one app over one engine."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._clock = clock
        self.queue_cache_seconds = QUEUE_CACHE_SECONDS
        self._queues: tuple[float, dict[str, int]] | None = None
        self.step_executions = Counter(
            "flowkeeper_step_executions_total",
            "Steps run by this process's workers, by name and outcome.",
            ("name", "outcome"),
        )
        self.step_duration = Histogram(
            "flowkeeper_step_duration_seconds",
            "How long steps run by this process's workers took.",
            ("name",),
            STEP_BUCKETS,
        )
        self.commands = Counter(
            "flowkeeper_commands_total",
            "Commands executed through the API (executed=false: no transition's conditions held).",
            ("executed",),
        )
        self.http = Histogram(
            "flowkeeper_http_request_duration_seconds",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
            HTTP_BUCKETS,
        )

    def observe_step(self, name: str, queue: str, seconds: float) -> None:
        """The engine's step observer: count a step run."""
        self.step_executions.inc((name, OUTCOMES.get(queue, queue)))
        self.step_duration.observe((name,), seconds)

    def queue_sizes(self) -> dict[str, int] | None:
        """Steps per queue, read at most every ``queue_cache_seconds`` (None if unreadable)."""
        now = self._clock()
        cached = self._queues  # (when read, counts)
        if cached is not None and now - cached[0] < self.queue_cache_seconds:
            return cached[1]
        try:
            counts = self._engine.count()
        except FlowkeeperError as error:
            logger.warning("metrics: the step queues cannot be counted: %s", error)
            return None
        self._queues = (now, counts)
        return counts

    def render(self) -> str:
        """Every metric in the Prometheus text format (version 0.0.4)."""
        lines = []
        queues = self.queue_sizes()
        if queues is not None:
            lines += _header("flowkeeper_steps", "gauge", "Steps in each queue (every tenant's).")
            lines += [
                f"flowkeeper_steps{_labels(('queue',), (queue,))} {count}"
                for queue, count in sorted(queues.items())
            ]
        for family in (self.step_executions, self.step_duration, self.commands, self.http):
            lines += _header(family.name, family.kind, family.help)
            lines += family.samples()
        return "\n".join(lines) + "\n"


class HttpMetrics:
    """ASGI middleware: time every request, labelled by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            method = str(scope.get("method", ""))
            method = method if method in _METHODS else "other"  # clients choose the method
            labels = (method, route_template(scope), str(status))
            self.metrics.http.observe(labels, time.perf_counter() - started)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""HTTP methods counted by name; any other counts as ``other``, so labels stay bounded."""


def route_template(scope: Scope) -> str:
    """The template of the route a request matched (``/api/v1/processes/{process_id}``), with
    the prefixes of the routers it was included through; :data:`UNMATCHED` if none."""
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str) or not template:
        return UNMATCHED
    # The route may know only its path within its router: what the request's path holds
    # before the route's own part is the prefix.
    params = scope.get("path_params") or {}
    rendered = _PARAMETER.sub(lambda m: str(params.get(m.group(1), m.group(0))), template)
    path = str(scope.get("path", ""))
    if path.endswith(rendered):
        return path[: len(path) - len(rendered)] + template
    return template


def record_command(app: Starlette, executed: bool) -> None:
    """Count a command executed through the API (when ``app`` serves metrics)."""
    metrics: Metrics | None = getattr(app.state, "flowkeeper_metrics", None)
    if metrics is not None:
        metrics.commands.inc(("true" if executed else "false",))


def install_metrics(app: FastAPI, engine: Engine) -> Metrics:
    """Serve ``GET /metrics`` on ``app``, time its requests and count ``engine``'s steps."""
    metrics = Metrics(engine)
    app.state.flowkeeper_metrics = metrics
    engine.observe_steps(metrics.observe_step)
    router = APIRouter(tags=["health"])

    @router.get(
        "/metrics",
        response_class=Response,
        summary="Metrics",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def serve_metrics() -> Response:
        """Prometheus text format (no authentication; aggregates only)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(router)
    app.add_middleware(HttpMetrics, metrics=metrics)
    return metrics


def _header(name: str, kind: str, help: str) -> list[str]:
    text = help.replace("\\", "\\\\").replace("\n", "\\n")
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _labels(names: Sequence[str], values: Sequence[Any]) -> str:
    if not names:
        return ""
    pairs = (f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True))
    return "{" + ",".join(pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))
