"""``GET /api/v1/processes/{id}`` and ``POST …/commands/{command}`` answered by the fast
routes: the same answers as the FastAPI routes, and every request they cannot answer exactly
so is left to the FastAPI routes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from flowkeeper.api import auth, fast_routes
from flowkeeper.api.keys import KeyStore
from tests.api.conftest import (
    Headers,
    MakeKey,
    TestClient,
    assert_problem,
    create_process,
)
from tests.api.test_metrics import parse, scrape, value

P = "/api/v1/processes"


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


# -- POST /processes/{id}/commands/{command} ---------------------------------------------------

JSON = {"Content-Type": "application/json"}

COMMAND_REQUESTS: dict[str, tuple[str, dict[str, Any], bool]] = {
    # name: (command, what httpx sends, whether the fast route answers a cached key)
    "no body": ("StartSigning", {}, True),
    "identity and parameters": (
        "StartSigning",
        {"json": {"identity": "alice", "parameters": {"Comment": "please"}}},
        True,
    ),
    "empty object": ("StartSigning", {"json": {}}, True),
    "charset": (
        "StartSigning",
        {
            "content": b'{"identity": "alice"}',
            "headers": {"Content-Type": "application/json; charset=utf-8"},
        },
        True,
    ),
    "identity not permitted": ("StartSigning", {"json": {"identity": "mike"}}, True),
    "other activity's command": ("Paid", {"json": {"identity": "alice"}}, True),
    "unknown command": ("NoSuchCommand", {}, True),
    "unknown field": ("StartSigning", {"json": {"identity": "alice", "extra": 1}}, False),
    "identity too long": ("StartSigning", {"json": {"identity": "x" * 256}}, False),
    "parameters not an object": ("StartSigning", {"json": {"parameters": [1]}}, False),
    "a list": ("StartSigning", {"json": ["alice"]}, False),
    "null": ("StartSigning", {"content": b"null", "headers": JSON}, False),
    "broken JSON": ("StartSigning", {"content": b'{"identity": ', "headers": JSON}, False),
    "deep JSON": (
        "StartSigning",
        {"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON},
        False,
    ),
    "no content type": ("StartSigning", {"content": b'{"identity": "alice"}'}, False),
    "text/plain": (
        "StartSigning",
        {"content": b'{"identity": "alice"}', "headers": {"Content-Type": "text/plain"}},
        False,
    ),
    "bad command name": ("a%00b", {}, False),
}


def _outcome(response: Any) -> tuple[int, Any]:
    """What must be the same on both routes: the status and the problem type, or what the
    command did."""
    body = response.json()
    if response.status_code >= 400:
        return response.status_code, body["type"]
    process = body["process"]
    return 200, (
        body["executed"],
        process["activity"],
        process["parameters"],
        body["transitions"][0]["identity"],
    )


@pytest.fixture
def fast_answers(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each request a fast command route saw: whether it answered it (or raised a problem
    there) rather than passing it on."""
    seen: list[bool] = []
    work = fast_routes.FastCommand.work

    def recording(self: fast_routes.FastCommand, *args: Any) -> Any:
        try:
            found = work(self, *args)
        except Exception:
            seen.append(True)
            raise
        seen.append(found is not None)
        return found

    monkeypatch.setattr(fast_routes.FastCommand, "work", recording)
    return seen


@pytest.mark.parametrize("case", COMMAND_REQUESTS)
def test_a_command_gets_the_same_answer_on_both_routes(
    client: TestClient,
    make_key: MakeKey,
    vacation: str,
    key_checks: list[str],
    fast_answers: list[bool],
    case: str,
) -> None:
    command, sent, fast = COMMAND_REQUESTS[case]
    admin = make_key("admin")
    first, second = (create_process(client, admin)["id"] for _ in range(2))
    caller = make_key("service", identity="alice")
    headers = {**caller, **sent.get("headers", {})}
    request = {k: v for k, v in sent.items() if k != "headers"}
    path = f"{P}/{{}}/commands/{command}"

    by_fastapi = client.post(path.format(first), headers=headers, **request)  # key not cached
    assert client.get(f"{P}/{second}", headers=caller).status_code == 200  # now it is
    assert caller["Authorization"].removeprefix("Bearer ") in key_checks
    fast_answers.clear()
    again = client.post(path.format(second), headers=headers, **request)

    assert fast_answers == ([True] if fast else [False] if fast_answers else [])
    assert again.headers["content-type"] == by_fastapi.headers["content-type"]
    assert _outcome(again) == _outcome(by_fastapi)
    assert by_fastapi.status_code in (200, 400, 403, 409, 422), by_fastapi.text


def test_a_user_key_may_only_act_as_itself_on_the_fast_route(
    client: TestClient, make_key: MakeKey, vacation: str, key_checks: list[str]
) -> None:
    user = make_key("user", identity="alice")
    pid = create_process(client, user)["id"]  # caches the key
    key_checks.clear()
    refused = client.post(
        f"{P}/{pid}/commands/StartSigning", json={"identity": "bob"}, headers=user
    )
    assert_problem(refused, 403, "identity-not-permitted")
    executed = client.post(f"{P}/{pid}/commands/StartSigning", json={}, headers=user)
    assert executed.status_code == 200, executed.text
    assert executed.json()["transitions"][0]["identity"] == "alice"
    assert key_checks == []
    assert len(client.get(f"{P}/{pid}/history", headers=user).json()) == 1


def test_a_cached_key_of_another_tenant_or_a_revoked_one_changes_nothing(
    client: TestClient, make_key: MakeKey, keys: KeyStore, vacation: str
) -> None:
    admin = make_key("admin")
    pid = create_process(client, admin)["id"]
    other = make_key("service", tenant="globex", identity="alice")
    assert client.get(f"{P}/{pid}", headers=other).status_code == 404  # caches the key
    assert_problem(
        client.post(f"{P}/{pid}/commands/StartSigning", headers=other), 404, "process-not-found"
    )
    keys.revoke(keys.verify(admin["Authorization"].removeprefix("Bearer ")).id)  # type: ignore[union-attr]
    refused = client.post(
        f"{P}/{pid}/commands/StartSigning", json={"identity": "alice"}, headers=admin
    )
    assert_problem(refused, 401, "unauthorized")
    service = make_key("service")
    assert client.get(f"{P}/{pid}/history", headers=service).json() == []


def test_fast_commands_are_counted_and_timed(
    client: TestClient, admin: Headers, vacation: str, key_checks: list[str]
) -> None:
    pid = create_process(client, admin)["id"]
    key_checks.clear()
    for command in ("StartSigning", "Paid"):
        client.post(f"{P}/{pid}/commands/{command}", json={"identity": "alice"}, headers=admin)
    assert key_checks == []
    samples = scrape(client)
    assert value(samples, "flowkeeper_commands_total", executed="true") == 1
    route = "/api/v1/processes/{process_id}/commands/{command}"
    timed = "flowkeeper_http_request_duration_seconds_count"
    assert value(samples, timed, method="POST", route=route, status="200") == 1
    assert value(samples, timed, method="POST", route=route, status="409") == 1


def test_a_command_passed_on_by_a_mounted_app_keeps_its_body(
    app: FastAPI, client: TestClient, admin: Headers, vacation: str
) -> None:
    pid = create_process(client, admin)["id"]
    outer = Starlette(routes=[Mount("/flow", app=app)])
    with TestClient(outer) as mounted:
        path = f"/flow{P}/{pid}/commands/StartSigning"
        refused = mounted.post(path, json={"identity": "alice", "extra": 1}, headers=admin)
        assert "extra" in assert_problem(refused, 422, "validation-error")["detail"]
        done = mounted.post(
            path, json={"identity": "alice", "parameters": {"Comment": "hi"}}, headers=admin
        )
        assert done.status_code == 200, done.text
        assert done.json()["transitions"][0]["identity"] == "alice"


def test_a_client_gone_before_its_body_ends_executes_nothing(
    app: FastAPI, client: TestClient, make_key: MakeKey, vacation: str
) -> None:
    # A key whose own identity may execute the command: read as an empty body, the cut-off
    # request would execute it.
    alice = make_key("service", identity="alice")
    pid = create_process(client, alice)["id"]  # caches the key
    path = f"{P}/{pid}/commands/StartSigning"
    headers = [
        (b"authorization", alice["Authorization"].encode()),
        (b"content-type", b"application/json"),
    ]
    messages = [
        {"type": "http.request", "body": b'{"identity": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
    }
    with contextlib.suppress(Exception):  # a disconnected client may be answered or not
        asyncio.run(app(scope, receive, send))
    assert client.get(f"{P}/{pid}/history", headers=alice).json() == []
    executed = client.post(f"{P}/{pid}/commands/StartSigning", headers=alice)
    assert executed.status_code == 200, executed.text  # as the same request would, whole
