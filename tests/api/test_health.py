"""``/healthz``, ``/readyz``, the OpenAPI document and the docs page."""

from __future__ import annotations

from pathlib import Path

import pytest

import flowkeeper as fk
from flowkeeper.api import create_app
from flowkeeper.storage.migrate import HEAD_REVISION
from tests.api.conftest import TestClient, assert_problem


def test_health_and_readiness_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "revision": HEAD_REVISION}


def test_an_unmigrated_database_is_not_ready_and_the_api_says_why(tmp_path: Path) -> None:
    with fk.Engine(f"sqlite:///{tmp_path / 'empty.db'}") as engine:
        client = TestClient(create_app(engine), raise_server_exceptions=False)
        assert client.get("/healthz").status_code == 200
        body = assert_problem(client.get("/readyz"), 503, "not-ready")
        assert "flowkeeper migrate" in body["detail"]
        response = client.get("/api/v1/schemes", headers={"Authorization": "Bearer fk_x"})
        assert_problem(response, 503, "migration-required")


def test_an_unreachable_database_is_not_ready() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    with fk.Engine(url) as engine:
        client = TestClient(create_app(engine), raise_server_exceptions=False)
        assert_problem(client.get("/readyz"), 503, "not-ready")


def test_the_openapi_contract_and_the_docs(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["info"]["title"] == "Flowkeeper"
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"] == problem, where
            if path.startswith("/api/v1/"):
                assert operation["security"] == [{"HTTPBearer": []}], where
                assert {"401", "403", "422"} <= set(operation["responses"]), where
    upload = document["paths"]["/api/v1/schemes"]["post"]["requestBody"]["content"]
    assert set(upload) == {"application/xml", "application/json"}
    assert "swagger" in client.get("/docs").text.lower()


def test_create_app_takes_an_engine() -> None:
    with pytest.raises(fk.InvalidArgument, match=r"takes a flowkeeper\.Engine"):
        create_app("sqlite://")  # type: ignore[arg-type]
