"""Every error is an RFC 9457 problem with a stable type; malformed requests never get a 500."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import pytest

import flowkeeper as fk
from flowkeeper import errors
from flowkeeper.api import create_app
from flowkeeper.api.keys import ApiKeyNotFound, KeyStore
from flowkeeper.api.problems import ERROR_PROBLEMS, MAX_BODY_BYTES, kind_of
from tests.api.conftest import Headers, TestClient, assert_problem, create_process
from tests.processes.vacation import SCHEME, VACATION_XML

# The contract: clients branch on these. Change one only with a deprecation path.
EXPECTED = {
    "FlowkeeperError": (500, "internal-error"),
    "InvalidArgument": (422, "invalid-argument"),
    "NaiveDatetimeError": (422, "naive-datetime"),
    "InvalidStep": (422, "invalid-step"),
    "StepAlreadyRegistered": (503, "configuration-error"),
    "ConfigurationError": (503, "configuration-error"),
    "InvalidDatabaseURL": (503, "configuration-error"),
    "DatabaseUnavailable": (503, "database-unavailable"),
    "MigrationRequired": (503, "migration-required"),
    "SchemaNewerThanCode": (503, "schema-newer-than-code"),
    "StepNotFound": (404, "step-not-found"),
    "SingletonExists": (409, "singleton-exists"),
    "ConcurrencyError": (409, "concurrency-conflict"),
    "FailStep": (500, "internal-error"),
    "SchemeError": (422, "scheme-invalid"),
    "ExpressionError": (422, "expression-invalid"),
    "SchemeNotFound": (404, "scheme-not-found"),
    "ProcessNotFound": (404, "process-not-found"),
    "ProcessExists": (409, "process-exists"),
    "CommandNotAvailable": (409, "command-not-available"),
    "InvalidCommandParameters": (422, "invalid-command-parameters"),
    "StateNotAvailable": (422, "state-not-available"),
    "ProcessFinished": (409, "process-finished"),
    "ActionNotRegistered": (503, "action-not-registered"),
    "EndlessLoop": (422, "endless-loop"),
    "SchemeUpdateError": (409, "scheme-update-failed"),
    "FeatureNotSupported": (422, "feature-not-supported"),
    "CallbackFailed": (502, "callback-failed"),
    "ApiKeyNotFound": (404, "api-key-not-found"),
}


def every_error_class() -> list[type[fk.FlowkeeperError]]:
    found = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, fk.FlowkeeperError)
    ]
    return [*found, ApiKeyNotFound]


def test_every_flowkeeper_error_has_its_own_stable_problem_type() -> None:
    classes = every_error_class()
    assert {cls.__name__ for cls in classes} == set(EXPECTED), "map the new error class"
    for cls in classes:
        kind = ERROR_PROBLEMS[cls]
        assert (kind.status, kind.slug) == EXPECTED[cls.__name__]
        assert kind.type == f"https://flowkeeper.dev/problems/{kind.slug}"


def test_an_unlisted_subclass_takes_its_bases_problem() -> None:
    class Special(fk.ProcessNotFound):
        pass

    assert kind_of(Special("x")).slug == "process-not-found"


@pytest.mark.parametrize(
    ("method", "path", "content", "slug"),
    [
        ("POST", "/api/v1/processes", "{not json", "validation-error"),
        ("POST", "/api/v1/processes", '{"scheme": 5}', "validation-error"),
        ("POST", "/api/v1/processes", '{"scheme": "x", "parameters": []}', "validation-error"),
        ("POST", "/api/v1/processes", '{"scheme": "x", "identity": ["a"]}', "validation-error"),
        ("POST", "/api/v1/processes", '"just a string"', "validation-error"),
        ("POST", "/api/v1/processes", "", "validation-error"),
        ("POST", "/api/v1/processes", '{"scheme": "x", "process_id": "   "}', "invalid-argument"),
        ("POST", "/api/v1/processes/p/commands/Go", '{"parameters": 1}', "validation-error"),
        ("POST", "/api/v1/steps/fail", '{"search": {"id": 0}}', "validation-error"),
        ("POST", "/api/v1/steps/fail", '{"search": {"id": "x"}}', "validation-error"),
        (
            "POST",
            "/api/v1/steps/reexecute",
            '{"search": {}, "queues": ["ready"]}',
            "validation-error",
        ),
        ("POST", "/api/v1/steps/1/activate", '{"args": 1, "more": 2}', "validation-error"),
        ("GET", "/api/v1/steps/99999999999999999999999999999", None, "validation-error"),
        ("GET", "/api/v1/steps/-1", None, "validation-error"),
        ("GET", "/api/v1/steps/abc", None, "validation-error"),
        ("GET", "/api/v1/processes/" + "x" * 300, None, "validation-error"),
        ("GET", "/api/v1/processes/a%00b", None, "validation-error"),
        ("GET", "/api/v1/schemes/a%00b", None, "validation-error"),
        ("GET", "/api/v1/steps?name=a%00b", None, "validation-error"),
        ("GET", "/api/v1/steps?limit=0", None, "validation-error"),
        ("GET", "/api/v1/steps?limit=ten", None, "validation-error"),
        ("GET", "/api/v1/steps?queue=later", None, "validation-error"),
        ("GET", "/api/v1/steps?cursor=-5", None, "invalid-cursor"),
        ("GET", "/api/v1/processes?status=Sleeping", None, "validation-error"),
        ("GET", "/api/v1/schemes/x?version=0", None, "validation-error"),
        ("GET", "/api/v1/schemes/x?version=99999999999", None, "validation-error"),
        ("DELETE", "/api/v1/keys/NOT-HEX", None, "validation-error"),
        ("GET", "/api/v1/nothing/here", None, "not-found"),
        ("GET", "/nothing", None, "not-found"),
        ("PUT", "/api/v1/processes", "{}", "method-not-allowed"),
        ("PATCH", "/api/v1/steps/1", "{}", "method-not-allowed"),
        ("DELETE", "/api/v1/schemes", None, "method-not-allowed"),
    ],
)
def test_malformed_requests_get_a_4xx_problem(
    client: TestClient, admin: Headers, method: str, path: str, content: str | None, slug: str
) -> None:
    headers = {**admin, "Content-Type": "application/json"}
    response = client.request(method, path, content=content, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    body = assert_problem(response, response.status_code, slug)
    assert body["instance"].startswith("/")


def test_validation_problems_list_every_error(client: TestClient, admin: Headers) -> None:
    response = client.post("/api/v1/processes", json={"identity": 5, "x": 1}, headers=admin)
    body = assert_problem(response, 422, "validation-error")
    assert {tuple(e["loc"]) for e in body["errors"]} == {
        ("body", "scheme"),
        ("body", "identity"),
        ("body", "x"),
    }


def test_json_sent_as_another_media_type_is_422(client: TestClient, admin: Headers) -> None:
    response = client.post(
        "/api/v1/steps", content='{"name": "x"}', headers={**admin, "Content-Type": "text/plain"}
    )
    assert_problem(response, 422, "validation-error")


def test_a_body_announced_too_large_is_413(client: TestClient, admin: Headers) -> None:
    big = b"x" * (MAX_BODY_BYTES + 1)
    response = client.post(
        "/api/v1/schemes", content=big, headers={**admin, "Content-Type": "application/xml"}
    )
    assert_problem(response, 413, "payload-too-large")


@pytest.mark.parametrize(
    "path", ["/api/v1/schemes", "/api/v1/steps", "/api/v1/processes/p1/commands/Go"]
)
def test_a_body_streamed_too_large_is_413(client: TestClient, admin: Headers, path: str) -> None:
    # With the key verified (so cached) first: a command then meets the fast route.
    assert client.get("/api/v1/schemes", headers=admin).status_code == 200

    def chunks() -> Any:
        chunk = b" " * (1024 * 1024)
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            yield chunk

    media = "application/xml" if path.endswith("schemes") else "application/json"
    response = client.post(path, content=chunks(), headers={**admin, "Content-Type": media})
    assert_problem(response, 413, "payload-too-large")


def test_an_unexpected_error_is_a_logged_500_problem(
    engine: fk.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    @engine.action("Explode")
    def explode(ctx: Any, parameter: Any) -> None:
        raise RuntimeError("boom in user code")

    scheme = fk.SchemeBuilder("Bomb").activity("Start", initial=True, actions=["Explode"]).build()
    engine.schemes.save(scheme)
    app = create_app(engine)
    secret = app.state.flowkeeper_keys.create(role="admin", tenant_id="").secret
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        response = client.post(
            "/api/v1/processes",
            json={"scheme": "Bomb"},
            headers={"Authorization": f"Bearer {secret}"},
        )
    body = assert_problem(response, 500, "internal-error")
    assert "boom" not in body["detail"]  # no internals leak to the caller
    assert any("boom in user code" in (r.exc_text or "") for r in caplog.records)


def test_a_rule_no_code_registered_is_503(engine: fk.Engine, keys_free_app: Any) -> None:
    client, headers = keys_free_app
    engine.schemes.save(fk.Scheme.from_xml(VACATION_XML))
    pid = engine.processes.create(SCHEME, parameters={"Author": "alice"})
    response = client.post(
        f"/api/v1/processes/{pid}/commands/StartSigning",
        json={"identity": "alice"},
        headers=headers,
    )
    assert_problem(response, 503, "action-not-registered")


@pytest.fixture
def keys_free_app(engine: fk.Engine) -> Any:
    """An app whose engine has no rules registered, and an admin key of the default tenant."""
    app = create_app(engine)
    store: KeyStore = app.state.flowkeeper_keys
    headers = {"Authorization": f"Bearer {store.create(role='admin').secret}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, headers


@pytest.mark.parametrize(
    "parameters",
    ['{"Author": "\\ud800"}', '{"\\udc80": 1}', '{"A": [{"deep": ["\\ud800"]}]}'],
)
def test_parameters_that_cannot_be_stored_are_422(
    client: TestClient, admin: Headers, vacation: str, parameters: str
) -> None:
    response = client.post(
        "/api/v1/processes",
        content='{"scheme": "SimpleWF", "parameters": ' + parameters + "}",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert "surrogate" in assert_problem(response, 422, "validation-error")["detail"]
    pid = create_process(client, admin)["id"]
    response = client.post(
        f"/api/v1/processes/{pid}/commands/StartSigning",
        content='{"identity": "alice", "parameters": ' + parameters + "}",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert_problem(response, 422, "validation-error")


def test_nul_characters_inside_json_values_are_stored(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    created = create_process(client, admin, parameters={"Author": "alice", "Note": "a\x00b"})
    assert created["parameters"]["Note"] == "a\x00b"


@pytest.mark.parametrize("text", ['{"name": "a\\u0000b"}', '{"name": "\\ud800"}'])
def test_a_json_scheme_with_unstorable_text_is_422(
    client: TestClient, admin: Headers, text: str
) -> None:
    response = client.post(
        "/api/v1/schemes", content=text, headers={**admin, "Content-Type": "application/json"}
    )
    assert_problem(response, 422, "scheme-invalid")


def test_deeply_nested_json_is_a_4xx(client: TestClient, admin: Headers) -> None:
    deep = '{"name": "x", "state": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post(
        "/api/v1/steps", content=deep, headers={**admin, "Content-Type": "application/json"}
    )
    assert_problem(response, 400, "bad-request")
