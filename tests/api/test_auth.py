"""Keys, roles and tenants: who may do what, and nobody sees another tenant's objects."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

import flowkeeper as fk
from flowkeeper.api import create_app
from flowkeeper.api.keys import KeyStore
from tests.api.conftest import (
    Headers,
    MakeKey,
    TestClient,
    assert_problem,
    create_process,
)
from tests.processes.vacation import SCHEME, VACATION_XML

P = "/api/v1/processes"
S = "/api/v1/steps"


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Bearer fk_unknown", "Bearer x" * 50],
)
def test_a_missing_or_unknown_key_is_401(client: TestClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/api/v1/schemes", headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_revoked_key_is_401_at_once_on_the_server_that_revoked_it(
    client: TestClient, keys: KeyStore
) -> None:
    made = keys.create(role="admin", tenant_id="acme")
    headers = {"Authorization": f"Bearer {made.secret}"}
    assert client.get("/api/v1/schemes", headers=headers).status_code == 200
    keys.revoke(made.key.id)
    assert_problem(client.get("/api/v1/schemes", headers=headers), 401, "unauthorized")


def test_another_server_stops_trusting_a_revoked_key_within_the_cache_time(
    engine: fk.Engine,
) -> None:
    now = [1000.0]
    store = KeyStore(engine, cache_seconds=5.0, clock=lambda: now[0])
    app = create_app(engine, keys=store)
    made = KeyStore(engine).create(role="service", tenant_id="acme")
    headers = {"Authorization": f"Bearer {made.secret}"}
    with TestClient(app) as client:
        assert client.get(S, headers=headers).status_code == 200
        KeyStore(engine).revoke(made.key.id)  # on "another server"
        now[0] += 4.9
        assert client.get(S, headers=headers).status_code == 200  # still cached
        now[0] += 0.2
        assert_problem(client.get(S, headers=headers), 401, "unauthorized")


def test_a_look_up_that_began_before_a_revocation_is_not_kept(engine: fk.Engine) -> None:
    """A verify that read the key from the database just before another thread revoked it
    answers with what it read, but does not put the key back into the cache."""
    store = KeyStore(engine, cache_seconds=60.0)
    made = store.create(role="service", tenant_id="acme")
    read, revoked = threading.Event(), threading.Event()
    real_begin = store._begin  # the seam between the read and the caching

    @contextlib.contextmanager
    def begin_then_wait() -> Iterator[Any]:
        with real_begin() as conn:
            yield conn
        read.set()
        assert revoked.wait(10)

    store._begin = begin_then_wait  # type: ignore[method-assign]
    answers: list[Any] = []
    looking = threading.Thread(target=lambda: answers.append(store.verify(made.secret)))
    looking.start()
    assert read.wait(10)
    store._begin = real_begin  # type: ignore[method-assign]
    store.revoke(made.key.id)
    revoked.set()
    looking.join(10)
    assert answers[0] is not None  # it had read the key before the revocation
    assert store.cached(made.secret) is None
    assert store.verify(made.secret) is None


# -- roles ---------------------------------------------------------------------------------------

# (method, path, body) of one request per kind of operation; "{pid}" is a process of acme.
OPERATIONS: dict[str, tuple[str, str, Any]] = {
    "upload scheme": ("POST", "/api/v1/schemes", {"name": "x"}),
    "list schemes": ("GET", "/api/v1/schemes", None),
    "read scheme": ("GET", f"/api/v1/schemes/{SCHEME}", None),
    "create process": ("POST", P, {"scheme": SCHEME, "parameters": {"Author": "alice"}}),
    "read process": ("GET", P + "/{pid}", None),
    "list processes": ("GET", P, None),
    "commands": ("GET", P + "/{pid}/commands", None),
    "execute": ("POST", P + "/{pid}/commands/StartSigning", {}),
    "states": ("GET", P + "/{pid}/states", None),
    "history": ("GET", P + "/{pid}/history", None),
    "set state": ("POST", P + "/{pid}/state", {"state": "ManagerSigning"}),
    "update scheme": ("POST", P + "/{pid}/update-scheme", None),
    "delete process": ("DELETE", P + "/{pid}", None),
    "add step": ("POST", S, {"name": "x"}),
    "list steps": ("GET", S, None),
    "count steps": ("GET", S + "/count", None),
    "fail steps": ("POST", S + "/fail", {"search": {"name": "x"}}),
    "list keys": ("GET", "/api/v1/keys", None),
    "make key": ("POST", "/api/v1/keys", {"role": "user", "identity": "zed"}),
}
USER_MAY = {
    "create process",
    "read process",
    "list processes",
    "commands",
    "execute",
    "states",
    "history",
}
SERVICE_MAY = USER_MAY | {
    "list schemes",
    "read scheme",
    "set state",
    "update scheme",
    "delete process",
    "add step",
    "list steps",
    "count steps",
    "fail steps",
}


@pytest.mark.parametrize("role", ["admin", "service", "user"])
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_each_role_may_do_what_it_is_for(
    client: TestClient,
    make_key: MakeKey,
    admin: Headers,
    vacation: str,
    role: str,
    operation: str,
) -> None:
    pid = create_process(client, admin)["id"]
    method, path, body = OPERATIONS[operation]
    headers = make_key(role, identity="alice")
    response = client.request(method, path.format(pid=pid), json=body, headers=headers)
    allowed = role == "admin" or operation in (SERVICE_MAY if role == "service" else USER_MAY)
    if allowed:
        assert response.status_code < 400 or response.json()["type"].endswith(
            "scheme-invalid"  # the upload's body is not a valid scheme: the role was fine
        ), response.text
    else:
        assert_problem(response, 403, "forbidden")


def test_a_user_acts_only_as_its_own_identity(
    client: TestClient, make_key: MakeKey, admin: Headers, vacation: str
) -> None:
    user = make_key("user", identity="alice")
    response = client.post(P, json={"scheme": SCHEME, "identity": "bob"}, headers=user)
    assert "'alice' only" in assert_problem(response, 403, "identity-not-permitted")["detail"]

    pid = create_process(client, user, author="alice")["id"]
    history_identity = client.get(f"{P}/{pid}", headers=user).json()["parameters"]["Author"]
    assert history_identity == "alice"
    response = client.get(f"{P}/{pid}/commands", params={"identity": "mike"}, headers=user)
    assert_problem(response, 403, "identity-not-permitted")
    response = client.post(
        f"{P}/{pid}/commands/StartSigning", json={"identity": "mike"}, headers=user
    )
    assert_problem(response, 403, "identity-not-permitted")

    own = client.get(f"{P}/{pid}/commands", headers=user).json()
    assert [c["name"] for c in own] == ["StartSigning"]
    named = client.get(f"{P}/{pid}/commands", params={"identity": "alice"}, headers=user).json()
    assert named == own
    done = client.post(f"{P}/{pid}/commands/StartSigning", headers=user)
    assert done.status_code == 200, done.text
    assert client.get(f"{P}/{pid}/history", headers=user).json()[0]["identity"] == "alice"

    mike = make_key("user", identity="mike")
    assert [c["name"] for c in client.get(f"{P}/{pid}/commands", headers=mike).json()] == [
        "Reject",
        "Approve",
    ]


def test_a_service_acts_for_any_identity(
    client: TestClient, make_key: MakeKey, vacation: str
) -> None:
    service = make_key("service")
    pid = create_process(client, service, author="alice")["id"]
    for identity, command in (("alice", "StartSigning"), ("mike", "Approve")):
        response = client.post(
            f"{P}/{pid}/commands/{command}", json={"identity": identity}, headers=service
        )
        assert response.status_code == 200, response.text
    assert client.get(f"{P}/{pid}", headers=service).json()["activity"] == "AccountingReview"


# -- tenants ---------------------------------------------------------------------------------


def test_another_tenants_process_is_404_everywhere_and_unchanged(
    client: TestClient, make_key: MakeKey, admin: Headers, vacation: str, engine: fk.Engine
) -> None:
    pid = create_process(client, admin)["id"]
    other = make_key("admin", tenant="other")
    client.post(
        "/api/v1/schemes",
        content=VACATION_XML,
        headers={**other, "Content-Type": "application/xml"},
    )
    for method, suffix, body in [
        ("GET", "", None),
        ("GET", "/commands?identity=alice", None),
        ("POST", "/commands/StartSigning", {"identity": "alice"}),
        ("GET", "/states", None),
        ("POST", "/state", {"state": "RequestApproved"}),
        ("GET", "/history", None),
        ("POST", "/update-scheme", None),
        ("DELETE", "", None),
    ]:
        response = client.request(method, f"{P}/{pid}{suffix}", json=body, headers=other)
        assert_problem(response, 404, "process-not-found")
    assert client.get(P, headers=other).json()["items"] == []
    process = engine.processes.get(pid)
    assert (process.activity, process.tenant_id) == ("VacationRequestCreated", "acme")


def test_another_tenants_steps_are_invisible_and_untouched(
    client: TestClient, make_key: MakeKey, admin: Headers, engine: fk.Engine
) -> None:
    [mine] = client.post(S, json={"name": "job", "flow_id": "f"}, headers=admin).json()["ids"]
    other = make_key("service", tenant="other")
    assert_problem(client.get(f"{S}/{mine}", headers=other), 404, "step-not-found")
    assert_problem(client.post(f"{S}/{mine}/activate", headers=other), 404, "step-not-found")
    assert client.get(S, headers=other).json()["items"] == []
    assert client.get(f"{S}/count", headers=other).json() == {"ready": 0, "done": 0, "failed": 0}
    failed = client.post(f"{S}/fail", json={"search": {"flow_id": "f"}}, headers=other)
    assert failed.json() == {"ids": []}
    engine.fail_steps(fk.Search(id=mine))
    again = client.post(f"{S}/reexecute", json={"search": {"name": "job"}}, headers=other)
    assert again.json() == {"ids": []}
    assert engine.count() == {"ready": 0, "done": 0, "failed": 1}


def test_the_default_tenant_sees_what_the_python_api_made_without_one(
    client: TestClient, make_key: MakeKey, engine: fk.Engine
) -> None:
    engine.schemes.save(fk.Scheme.from_xml(VACATION_XML))
    pid = engine.processes.create(SCHEME, parameters={"Author": "alice"})
    step_id = engine.add_step(fk.Step("job"))
    default = make_key("admin", tenant="")
    assert client.get(f"{P}/{pid}", headers=default).json()["tenant_id"] is None
    assert client.get(f"{S}/{step_id}", headers=default).status_code == 200
    assert [s["name"] for s in client.get("/api/v1/schemes", headers=default).json()] == [SCHEME]
    acme = make_key("admin")
    assert_problem(client.get(f"{P}/{pid}", headers=acme), 404, "process-not-found")
    assert_problem(client.get(f"{S}/{step_id}", headers=acme), 404, "step-not-found")


# -- keys over HTTP ------------------------------------------------------------------------------


def test_an_admin_manages_its_tenants_keys(
    client: TestClient, app: FastAPI, admin: Headers, make_key: MakeKey
) -> None:
    made = client.post(
        "/api/v1/keys", json={"role": "user", "identity": "zed", "description": "ui"}, headers=admin
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["key"].startswith(body["prefix"])
    assert body["key"].startswith("fk_")
    assert (body["tenant_id"], body["role"], body["identity"]) == ("acme", "user", "zed")
    headers = {"Authorization": f"Bearer {body['key']}"}
    assert client.get(P, headers=headers).status_code == 200

    listed = client.get("/api/v1/keys", headers=admin).json()
    assert body["id"] in [k["id"] for k in listed]
    assert all("key" not in k for k in listed)

    other = make_key("admin", tenant="other")
    response = client.delete(f"/api/v1/keys/{body['id']}", headers=other)
    assert_problem(response, 404, "api-key-not-found")
    assert body["id"] not in [k["id"] for k in client.get("/api/v1/keys", headers=other).json()]

    revoked = client.delete(f"/api/v1/keys/{body['id']}", headers=admin)
    assert revoked.json()["revoked_at"] is not None
    assert_problem(client.get(P, headers=headers), 401, "unauthorized")


def test_a_user_key_needs_an_identity(client: TestClient, admin: Headers) -> None:
    response = client.post("/api/v1/keys", json={"role": "user"}, headers=admin)
    assert "identity is required" in assert_problem(response, 422, "invalid-argument")["detail"]
    response = client.post("/api/v1/keys", json={"role": "root"}, headers=admin)
    assert_problem(response, 422, "validation-error")
