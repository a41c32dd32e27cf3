"""``/api/v1/steps``: add, list, count, read, activate, re-execute and fail, within a tenant."""

from __future__ import annotations

from typing import Any

import pytest

import flowkeeper as fk
from tests.api.conftest import Headers, MakeKey, TestClient, assert_problem

S = "/api/v1/steps"


def add(client: TestClient, headers: Headers, body: Any) -> list[int]:
    response = client.post(S, json=body, headers=headers)
    assert response.status_code == 201, response.text
    ids: list[int] = response.json()["ids"]
    return ids


def test_adding_one_step_or_a_list(client: TestClient, admin: Headers, engine: fk.Engine) -> None:
    [one] = add(client, admin, {"name": "v1/mail", "state": {"to": "x@example.com"}})
    more = add(
        client,
        admin,
        [
            {"name": "v1/mail", "flow_id": "f", "search_key": "order-7"},
            {"name": "v1/bill", "run_at": "2099-01-01T00:00:00+02:00", "description": "later"},
        ],
    )
    assert len(more) == 2
    record = engine.get_step(one)
    assert (record.tenant_id, record.state) == ("acme", {"to": "x@example.com"})
    body = client.get(f"{S}/{more[1]}", headers=admin).json()
    assert body["run_at"] == "2098-12-31T22:00:00Z"
    assert (body["queue"], body["tenant_id"], body["description"]) == ("ready", "acme", "later")


def test_listing_filters_pages_and_counts(
    client: TestClient, admin: Headers, engine: fk.Engine
) -> None:
    ids = add(client, admin, [{"name": "a", "search_key": f"k{n}"} for n in range(5)])
    add(client, admin, {"name": "b"})
    engine.fail_steps(fk.Search(id=ids[0]))

    def listed(**params: Any) -> list[int]:
        return [s["id"] for s in client.get(S, params=params, headers=admin).json()["items"]]

    assert listed(name="a") == ids
    assert listed(name="a", queue="ready") == ids[1:]
    assert listed(queue=["failed", "done"]) == ids[:1]
    assert listed(search_key="k%", limit=2) == ids[:2]
    assert listed(name="zzz") == []

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"name": "a", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = client.get(S, params=params, headers=admin).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    counts = client.get(f"{S}/count", params={"name": "a"}, headers=admin).json()
    assert counts == {"ready": 4, "done": 0, "failed": 1}
    assert client.get(f"{S}/count", headers=admin).json()["ready"] == 5


def test_activate_makes_a_ready_step_due_with_args(
    client: TestClient, admin: Headers, engine: fk.Engine
) -> None:
    [step_id] = add(client, admin, {"name": "wait", "run_at": "2099-01-01T00:00:00Z"})
    response = client.post(f"{S}/{step_id}/activate", json={"args": {"ok": True}}, headers=admin)
    assert response.json() == {"activated": True}
    assert engine.get_step(step_id).activation_args == {"ok": True}
    assert client.post(f"{S}/{step_id}/activate", headers=admin).json() == {"activated": True}
    engine.fail_steps(fk.Search(id=step_id))
    assert client.post(f"{S}/{step_id}/activate", headers=admin).json() == {"activated": False}


def test_fail_and_reexecute(client: TestClient, admin: Headers, engine: fk.Engine) -> None:
    ids = add(client, admin, [{"name": "job", "flow_id": "f1"}, {"name": "job", "flow_id": "f2"}])
    failed = client.post(
        f"{S}/fail", json={"search": {"flow_id": "f1"}, "description": "by hand"}, headers=admin
    )
    assert failed.json() == {"ids": ids[:1]}
    assert engine.get_step(ids[0]).description == "by hand"
    again = client.post(f"{S}/reexecute", json={"search": {"name": "job"}}, headers=admin).json()
    assert len(again["ids"]) == 1
    assert engine.get_step(again["ids"][0]).tenant_id == "acme"
    none = client.post(
        f"{S}/reexecute", json={"search": {"name": "job"}, "queues": ["done"]}, headers=admin
    )
    assert none.json() == {"ids": []}


def test_fail_refuses_an_empty_search(client: TestClient, admin: Headers) -> None:
    add(client, admin, {"name": "job"})
    response = client.post(f"{S}/fail", json={"search": {}}, headers=admin)
    assert "at least one filter" in assert_problem(response, 422, "invalid-argument")["detail"]


def test_a_second_ready_singleton_is_409(client: TestClient, admin: Headers) -> None:
    add(client, admin, {"name": "tick", "singleton": True})
    response = client.post(S, json={"name": "tick", "singleton": True}, headers=admin)
    assert assert_problem(response, 409, "singleton-exists")["names"] == ["tick"]


@pytest.mark.parametrize(
    ("body", "slug"),
    [
        ('{"name": "x", "state": NaN}', "invalid-step"),
        ('{"name": "x", "run_at": "0001-01-01T00:00:00Z"}', "invalid-step"),
        ('{"name": "x", "run_at": "2030-01-01T00:00:00"}', "validation-error"),
        ('{"name": ""}', "validation-error"),
        ('{"name": "x", "colour": "red"}', "validation-error"),
        ("[]", "validation-error"),
        ('{"name": "' + "x" * 256 + '"}', "validation-error"),
        ('{"name": "a\\u0000b"}', "validation-error"),
        ('{"name": "\\ud800"}', "validation-error"),
        ('{"name": "x", "description": "\\udc80"}', "validation-error"),
    ],
)
def test_steps_that_cannot_be_stored_are_422(
    client: TestClient, admin: Headers, engine: fk.Engine, body: str, slug: str
) -> None:
    response = client.post(S, content=body, headers={**admin, "Content-Type": "application/json"})
    assert_problem(response, 422, slug)
    assert engine.count() == {"ready": 0, "done": 0, "failed": 0}


def test_unknown_steps_are_404(client: TestClient, admin: Headers) -> None:
    assert_problem(client.get(f"{S}/12345", headers=admin), 404, "step-not-found")
    assert_problem(client.post(f"{S}/12345/activate", headers=admin), 404, "step-not-found")


def test_users_have_no_access_to_steps(client: TestClient, make_key: MakeKey) -> None:
    user = make_key("user")
    for method, path in [("GET", S), ("POST", S), ("GET", f"{S}/count"), ("GET", f"{S}/1")]:
        body = {"name": "x"} if method == "POST" else None
        assert_problem(client.request(method, path, json=body, headers=user), 403, "forbidden")
    assert client.get(S, headers=make_key("service")).status_code == 200
