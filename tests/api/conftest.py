"""Fixtures of the HTTP API tests: an app over the test engine, a client, keys per role."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

import flowkeeper as fk
from flowkeeper.api import create_app
from flowkeeper.api.keys import KeyStore
from flowkeeper.api.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from tests.processes.vacation import SCHEME, VACATION_XML, register_rules

with warnings.catch_warnings():
    # Starlette would like httpx2 for its test client; httpx works the same here.
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient as TestClient

Headers = dict[str, str]
MakeKey = Callable[..., Headers]


@pytest.fixture
def app(engine: fk.Engine) -> FastAPI:
    """The API over the test engine, with the VacationRequest rules registered."""
    register_rules(engine)
    return create_app(engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client of the app that answers with what the app sends, 500s included."""
    with TestClient(app, raise_server_exceptions=False) as made:
        yield made


@pytest.fixture
def keys(app: FastAPI) -> KeyStore:
    """The app's key store."""
    store: KeyStore = app.state.flowkeeper_keys
    return store


@pytest.fixture
def make_key(keys: KeyStore) -> MakeKey:
    """``make_key(role, tenant="acme", identity=None)``: headers carrying a new key."""

    def make(role: str, tenant: str = "acme", identity: str | None = None) -> Headers:
        if role == "user" and identity is None:
            identity = "alice"
        secret = keys.create(role=role, tenant_id=tenant, identity=identity).secret
        return {"Authorization": f"Bearer {secret}"}

    return make


@pytest.fixture
def admin(make_key: MakeKey) -> Headers:
    """An admin key of tenant ``acme``."""
    return make_key("admin")


@pytest.fixture
def vacation(client: TestClient, admin: Headers) -> str:
    """Tenant ``acme`` has the VacationRequest scheme; its name."""
    response = client.post(
        "/api/v1/schemes",
        content=VACATION_XML,
        headers={**admin, "Content-Type": "application/xml"},
    )
    assert response.status_code == 201, response.text
    return SCHEME


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status and type; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), response.headers
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_BASE + slug, body
    assert body["status"] == status
    assert body["title"]
    assert isinstance(body.get("detail"), str)
    return body


def create_process(
    client: TestClient, headers: Headers, author: str = "alice", **extra: Any
) -> dict[str, Any]:
    """A new VacationRequest process by ``author``; its body."""
    body = {"scheme": SCHEME, "identity": author, "parameters": {"Author": author, "Sum": 80}}
    response = client.post("/api/v1/processes", json={**body, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
