"""``GET /api/v1/processes/{id}`` answered by the fast route: the same answers as the FastAPI
route, and every request it cannot answer exactly so is left to the FastAPI route."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from flowkeeper.api import auth
from flowkeeper.api.keys import KeyStore
from tests.api.conftest import (
    Headers,
    MakeKey,
    TestClient,
    assert_problem,
    create_process,
)
from tests.api.test_metrics import parse, scrape, value


@pytest.fixture
def key_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The secrets FastAPI's key dependency checked: the fast route never calls it."""
    checked: list[str] = []
    authenticate = auth.authenticate

    async def counting(keys: KeyStore, credentials: Any) -> auth.Principal:
        checked.append("" if credentials is None else credentials.credentials)
        return await authenticate(keys, credentials)

    monkeypatch.setattr(auth, "authenticate", counting)
    return checked


def test_a_verified_key_is_answered_without_the_fastapi_route(
    client: TestClient, make_key: MakeKey, vacation: str, key_checks: list[str]
) -> None:
    process = create_process(client, make_key("admin"))
    service = make_key("service")
    key_checks.clear()
    path = f"/api/v1/processes/{process['id']}"

    first = client.get(path, headers=service)  # a key not yet in the cache: FastAPI checks it
    assert first.status_code == 200, first.text
    assert len(key_checks) == 1
    again = client.get(path, headers=service)
    assert again.status_code == 200
    assert len(key_checks) == 1  # the fast route answered
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.json() == first.json() == process


def test_refusals_are_the_fastapi_routes_own(
    client: TestClient, make_key: MakeKey, keys: KeyStore, vacation: str, key_checks: list[str]
) -> None:
    service = make_key("service")
    process = create_process(client, service)
    path = f"/api/v1/processes/{process['id']}"
    assert client.get(path, headers=service).status_code == 200  # the key is cached now

    other_tenant = make_key("service", tenant="globex")
    assert client.get(path, headers=other_tenant).status_code == 404  # caches that key too
    assert_problem(client.get(path, headers=other_tenant), 404, "process-not-found")
    assert_problem(
        client.get("/api/v1/processes/no-such-process", headers=service),
        404,
        "process-not-found",
    )
    assert_problem(client.get(path), 401, "unauthorized")
    assert_problem(client.get(path, headers={"Authorization": "Basic eDp5"}), 401, "unauthorized")
    assert_problem(
        client.get("/api/v1/processes/" + "x" * 256, headers=service), 422, "validation-error"
    )
    assert_problem(client.get("/api/v1/processes/a%00b", headers=service), 422, "validation-error")

    secret = service["Authorization"].removeprefix("Bearer ")
    revoked = keys.verify(secret)
    assert revoked is not None
    keys.revoke(revoked.id)
    assert_problem(client.get(path, headers=service), 401, "unauthorized")


@pytest.mark.parametrize("method", ["HEAD", "PUT", "PATCH"])
def test_other_methods_meet_the_fastapi_routes(
    client: TestClient, admin: Headers, vacation: str, method: str
) -> None:
    process = create_process(client, admin)
    path = f"/api/v1/processes/{process['id']}"
    client.get(path, headers=admin)
    response = client.request(method, path, headers=admin)
    assert response.status_code == 405
    assert "GET" in response.headers["allow"].split(", ")


def test_fast_reads_are_timed_under_the_route_template(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    process = create_process(client, admin)
    for _ in range(3):
        assert client.get(f"/api/v1/processes/{process['id']}", headers=admin).status_code == 200
    count = value(
        scrape(client),
        "flowkeeper_http_request_duration_seconds_count",
        method="GET",
        route="/api/v1/processes/{process_id}",
        status="200",
    )
    assert count == 3


def test_the_contract_still_documents_the_read(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/processes/{process_id}"]
    assert operation["get"]["summary"] == "Read a process"
    assert "bearer" in str(operation["get"]["security"]).lower()


def test_mounted_in_another_app_each_request_passes_the_middleware_once(
    app: FastAPI, client: TestClient, admin: Headers, vacation: str
) -> None:
    process = create_process(client, admin)
    outer = Starlette(routes=[Mount("/flow", app=app)])
    with TestClient(outer) as mounted:
        path = f"/flow/api/v1/processes/{process['id']}"
        assert mounted.get(path, headers=admin).json() == process  # the fast route
        assert_problem(mounted.get(path), 401, "unauthorized")  # passed on to FastAPI's
        samples = parse(mounted.get("/flow/metrics").text)
    timed = "flowkeeper_http_request_duration_seconds_count"
    route = "/flow/api/v1/processes/{process_id}"  # the template as the outer app sees it
    assert value(samples, timed, method="GET", route=route, status="200") == 1
    assert value(samples, timed, method="GET", route=route, status="401") == 1
