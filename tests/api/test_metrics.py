"""``GET /metrics``: scraped after some activity, parsed, and watched as the values move."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi import FastAPI

import flowkeeper as fk
from flowkeeper.api import create_app
from flowkeeper.api.metrics import CONTENT_TYPE, Counter, Histogram, Metrics
from tests.api.conftest import Headers, TestClient, create_process

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_ESCAPE = re.compile(r"\\(.)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse(text: str) -> Samples:
    """The samples of a Prometheus text exposition; every line must be well formed, and
    every sample's family declared (HELP and TYPE) before it."""
    assert text.endswith("\n")
    samples: Samples = {}
    declared: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            declared[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"malformed line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        family = family if family in declared else name
        assert family in declared, f"no TYPE before: {line!r}"
        assert family in helped, f"no HELP before: {line!r}"
        pairs = _LABEL.findall(labels or "")
        unescaped = {(k, _ESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], v)) for k, v in pairs}
        samples[(name, frozenset(unescaped))] = float(value)
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sample's value; 0 when it is not there (a counter not yet counted)."""
    return samples.get((metric, frozenset(labels.items())), 0.0)


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return parse(response.text)


def metrics_of(app: FastAPI) -> Metrics:
    found: Metrics = app.state.flowkeeper_metrics
    return found


def test_metrics_need_no_key_and_can_be_turned_off(engine: fk.Engine) -> None:
    with TestClient(create_app(engine)) as client:
        assert client.get("/metrics").status_code == 200
    with TestClient(create_app(engine, metrics=False), raise_server_exceptions=False) as client:
        assert client.get("/metrics").status_code == 404


def test_queue_gauges_follow_the_queues_through_a_short_cache(
    app: FastAPI, client: TestClient, engine: fk.Engine
) -> None:
    samples = scrape(client)
    assert {
        q: value(samples, "flowkeeper_steps", queue=q) for q in ("ready", "done", "failed")
    } == {
        "ready": 0,
        "done": 0,
        "failed": 0,
    }
    engine.add_steps(fk.Step("m/a"), fk.Step("m/a"))
    assert value(scrape(client), "flowkeeper_steps", queue="ready") == 0  # cached for 5 s
    metrics_of(app).queue_cache_seconds = 0
    assert value(scrape(client), "flowkeeper_steps", queue="ready") == 2
    engine.fail_steps(fk.Search(name="m/a"))
    samples = scrape(client)
    assert value(samples, "flowkeeper_steps", queue="ready") == 0
    assert value(samples, "flowkeeper_steps", queue="failed") == 2


def test_step_runs_are_counted_by_outcome_and_timed(
    app: FastAPI, client: TestClient, engine: fk.Engine
) -> None:
    @engine.step("m/ok")
    def ok(step: fk.StepContext) -> None:
        time.sleep(0.03)

    @engine.step("m/fail")
    def fail(step: fk.StepContext) -> None:
        raise fk.FailStep("no")

    @engine.step("m/retry")
    def retry(step: fk.StepContext) -> None:
        raise RuntimeError("later")

    engine.add_steps(
        fk.Step("m/ok"), fk.Step("m/ok"), fk.Step("m/fail"), fk.Step("m/retry"), fk.Step("m/x")
    )
    engine.run(workers=2, until_idle=True, handle_signals=False)
    samples = scrape(client)
    executions = "flowkeeper_step_executions_total"
    assert value(samples, executions, name="m/ok", outcome="done") == 2
    assert value(samples, executions, name="m/fail", outcome="failed") == 1
    assert value(samples, executions, name="m/retry", outcome="rescheduled") == 1
    assert not [k for k in samples if ("name", "m/x") in k[1]]  # postponed: not run here

    duration = "flowkeeper_step_duration_seconds"
    assert value(samples, f"{duration}_count", name="m/ok") == 2
    assert value(samples, f"{duration}_sum", name="m/ok") >= 0.06
    assert value(samples, f"{duration}_bucket", name="m/ok", le="0.025") == 0
    assert value(samples, f"{duration}_bucket", name="m/ok", le="+Inf") == 2
    assert value(samples, f"{duration}_count", name="m/fail") == 1

    engine.add_step(fk.Step("m/ok"))
    engine.run(workers=1, until_idle=True, handle_signals=False)
    assert value(scrape(client), executions, name="m/ok", outcome="done") == 3  # across runs


def test_commands_are_counted_by_whether_they_moved(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    scheme = fk.SchemeBuilder("Gate")
    scheme.command("Go").activity("A", initial=True).activity("B")
    scheme.on_command("Go", "A", "B", expression="@Amount > 100")
    saved = client.post("/api/v1/schemes", json=scheme.build().to_dict(), headers=admin)
    assert saved.status_code == 201, saved.text
    counted = "flowkeeper_commands_total"
    assert value(scrape(client), counted, executed="true") == 0

    pid = create_process(client, admin)["id"]
    moved = client.post(
        f"/api/v1/processes/{pid}/commands/StartSigning", json={"identity": "alice"}, headers=admin
    )
    assert moved.json()["executed"] is True
    gate = client.post(
        "/api/v1/processes", json={"scheme": "Gate", "parameters": {"Amount": 5}}, headers=admin
    ).json()["id"]
    stuck = client.post(f"/api/v1/processes/{gate}/commands/Go", json={}, headers=admin)
    assert stuck.json()["executed"] is False
    refused = client.post(f"/api/v1/processes/{gate}/commands/Nope", json={}, headers=admin)
    assert refused.status_code == 409

    samples = scrape(client)
    assert value(samples, counted, executed="true") == 1
    assert value(samples, counted, executed="false") == 1


def test_requests_are_timed_by_method_route_template_and_status(
    client: TestClient, admin: Headers
) -> None:
    for _ in range(2):
        client.get("/healthz")
    client.get("/api/v1/processes/p-1", headers=admin)
    client.get("/api/v1/processes/p-2", headers=admin)
    client.get("/api/v1/processes/p-3")
    client.get("/no/such/route/42")
    client.put("/healthz")

    samples = scrape(client)
    http = "flowkeeper_http_request_duration_seconds"

    def count(method: str, route: str, status: str) -> float:
        return value(samples, f"{http}_count", method=method, route=route, status=status)

    assert count("GET", "/healthz", "200") == 2
    assert count("GET", "/api/v1/processes/{process_id}", "404") == 2
    assert count("GET", "/api/v1/processes/{process_id}", "401") == 1
    assert count("GET", "unmatched", "404") == 1
    assert count("PUT", "/healthz", "405") == 1
    assert not [key for key in samples if any("p-1" in v or "42" in v for _, v in key[1])]

    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    buckets = sorted(
        (float(dict(key[1])["le"]), number)
        for key, number in samples.items()
        if key[0] == f"{http}_bucket" and dict(key[1]).items() >= labels.items()
    )
    assert [b for b, _ in buckets][-1] == float("inf")
    counts = [n for _, n in buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == 2
    assert value(samples, f"{http}_sum", **labels) > 0


def test_the_text_format_escapes_label_values_and_help() -> None:
    counter = Counter("t_total", 'Help with \\ and\nnewline "quoted".', ("name",))
    counter.inc(('a "b"\\c\nd',), 2)
    histogram = Histogram("t_seconds", "Durations.", (), (0.1, 1.0))
    for seconds in (0.05, 0.5, 5.0):
        histogram.observe((), seconds)
    lines = counter.samples() + histogram.samples()
    assert lines[0] == 't_total{name="a \\"b\\"\\\\c\\nd"} 2'
    text = "\n".join(
        [
            "# HELP t_total Help",
            "# TYPE t_total counter",
            "# HELP t_seconds Durations.",
            "# TYPE t_seconds histogram",
            *lines,
        ]
    )
    samples = parse(text + "\n")
    assert value(samples, "t_total", name='a "b"\\c\nd') == 2
    assert [value(samples, "t_seconds_bucket", le=le) for le in ("0.1", "1", "+Inf")] == [1, 2, 3]
    assert value(samples, "t_seconds_sum") == pytest.approx(5.55)
    assert value(samples, "t_seconds_count") == 3


def test_an_unreadable_database_leaves_the_other_metrics(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch, engine: fk.Engine
) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> dict[str, int]:
        raise fk.DatabaseUnavailable("down")

    monkeypatch.setattr(engine, "count", unavailable)
    scrape(client)
    samples = scrape(client)
    assert not [key for key in samples if key[0] == "flowkeeper_steps"]
    timed = "flowkeeper_http_request_duration_seconds_count"
    assert value(samples, timed, method="GET", route="/metrics", status="200") == 1
