"""HTTP callbacks: a real HTTP service serves a tenant's actions, conditions and rules.

The service runs in a thread of the test (``http.server``) on 127.0.0.1, which the engines of
these tests allow (``LOCAL``: loopback is refused by default); processes are created and moved
through the API, so each test covers registration, the wire format, the tenant's look-up and
the one transaction a command runs in.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

import flowkeeper as fk
from flowkeeper.cli import app as cli
from flowkeeper.processes.model import Condition, ConditionType
from tests.api.conftest import Headers, MakeKey, TestClient, assert_problem

SCHEME = "Payment"
C = "/api/v1/callbacks"
P = "/api/v1/processes"
LOCAL = ["127.0.0.1"]
"""What the engines here allow callbacks to reach: the test's service."""

Answer = Callable[[dict[str, Any]], tuple[int, bytes, float]]
"""What the service answers a request: status, body and how long to wait first."""


@dataclass
class Seen:
    path: str
    authorization: str | None
    body: dict[str, Any]


class Service:
    """An HTTP service serving ``Stamp`` (action), ``IsBig`` (condition) and ``Approver``
    (rule); ``answers[name]`` replaces the answer to one name, ``headers`` are sent with every
    answer."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.answers: dict[str, Answer] = {}
        self.headers: dict[str, str] = {}
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.seen.append(Seen(self.path, self.headers.get("Authorization"), body))
                answer = service.answers.get(body["name"], service.answer)
                status, content, delay = answer(body)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    for header, value in service.headers.items():
                        self.send_header(header, value)
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def answer(self, body: dict[str, Any]) -> tuple[int, bytes, float]:
        kind, parameter, parameters = body["type"], body["parameter"], body["parameters"]
        if kind == "action":
            result: dict[str, Any] = {
                "parameters": {"Stamped": True, "StampedBy": body["identity"]},
                "removed": ["Draft"],
            }
        elif kind == "condition":
            result = {"result": parameters["Amount"] > parameter["Over"]}
        elif kind == "rule_check":
            result = {"result": body["identity"] == parameter}
        else:
            result = {"identities": [parameter]}
        return 200, json.dumps(result).encode(), 0.0

    def requests(self, kind: str) -> list[Seen]:
        return [s for s in self.seen if s.body["type"] == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def engine(db_url: str) -> Iterator[fk.Engine]:
    """The test engine (as tests/conftest.py builds it), allowed to call the local service."""
    made = fk.Engine(db_url, lease=5, callback_allowed_hosts=LOCAL)
    yield made
    made.close()


@pytest.fixture
def service() -> Iterator[Service]:
    made = Service()
    yield made
    made.close()


def payment_scheme(
    review: tuple[str | tuple[str, str], ...] = (("Stamp", '{"Copies": 2}'),),
) -> dict[str, object]:
    """Draft → (Submit) → Review, whose ``review`` actions run (Stamp); (Approve, only by the
    Approver rule's ``boss``) → Big when IsBig holds, else Small."""
    b = fk.SchemeBuilder(SCHEME)
    b.actor("Boss", rule="Approver", value="boss")
    b.command("Submit").command("Approve")
    b.activity("Draft", state="Draft", initial=True)
    b.activity("Review", state="Review", actions=review)
    b.activity("Big", state="Big", final=True)
    b.activity("Small", state="Small", final=True)
    b.on_command("Submit", "Draft", "Review")
    big = Condition(ConditionType.ACTION, "IsBig", parameter='{"Over": 100}')
    b.on_command("Approve", "Review", "Big", allow=["Boss"], condition=big)
    b.on_command("Approve", "Review", "Small", allow=["Boss"], otherwise=True)
    return b.build().to_dict()


@pytest.fixture
def payment(client: TestClient, make_key: MakeKey) -> Callable[[Headers], None]:
    """Save the Payment scheme in the tenant of the given admin key."""

    def save(headers: Headers) -> None:
        response = client.post("/api/v1/schemes", json=payment_scheme(), headers=headers)
        assert response.status_code == 201, response.text

    return save


def register(client: TestClient, headers: Headers, url: str, **extra: Any) -> dict[str, Any]:
    body = {
        "url": url,
        "token": "s3cret",
        "actions": ["Stamp"],
        "conditions": ["IsBig"],
        "rules": ["Approver"],
        **extra,
    }
    response = client.post(C, json=body, headers=headers)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def start(client: TestClient, headers: Headers, amount: int = 120) -> str:
    body = {"scheme": SCHEME, "identity": "alice", "parameters": {"Amount": amount, "Draft": 1}}
    response = client.post(P, json=body, headers=headers)
    assert response.status_code == 201, response.text
    process_id: str = response.json()["id"]
    return process_id


def execute(client: TestClient, headers: Headers, pid: str, command: str, identity: str) -> Any:
    return client.post(
        f"{P}/{pid}/commands/{command}", json={"identity": identity}, headers=headers
    )


def snapshot(client: TestClient, headers: Headers, pid: str) -> tuple[Any, Any]:
    """The process and its history as the API shows them."""
    process = client.get(f"{P}/{pid}", headers=headers)
    history = client.get(f"{P}/{pid}/history", headers=headers)
    assert process.status_code == history.status_code == 200
    return process.json(), history.json()


# -- registration ----------------------------------------------------------------------------


def test_register_list_read_and_remove(
    client: TestClient, admin: Headers, service: Service
) -> None:
    made = register(client, admin, f"{service.url}/hook", timeout_ms=1500)
    assert made["tenant_id"] == "acme"
    assert made["has_token"] is True
    assert "token" not in made
    assert (made["actions"], made["conditions"], made["rules"]) == (
        ["Stamp"],
        ["IsBig"],
        ["Approver"],
    )
    assert made["timeout_ms"] == 1500
    assert client.get(C, headers=admin).json() == [made]
    assert client.get(f"{C}/{made['id']}", headers=admin).json() == made
    assert "s3cret" not in client.get(C, headers=admin).text

    assert client.delete(f"{C}/{made['id']}", headers=admin).status_code == 204
    assert client.get(C, headers=admin).json() == []
    assert_problem(client.delete(f"{C}/{made['id']}", headers=admin), 404, "callback-not-found")
    assert_problem(client.get(f"{C}/{made['id']}", headers=admin), 404, "callback-not-found")


@pytest.mark.parametrize(
    ("change", "slug"),
    [
        ({"url": "ftp://example.com/x"}, "validation-error"),
        ({"url": "http:///no-host"}, "invalid-argument"),
        ({"url": "http://exa mple.com"}, "validation-error"),
        ({"token": "two words"}, "validation-error"),
        ({"timeout_ms": 0}, "validation-error"),
        ({"timeout_ms": 60_001}, "validation-error"),
        ({"actions": [""]}, "validation-error"),
        ({"actions": [], "conditions": [], "rules": []}, "invalid-argument"),
        ({"extra": 1}, "validation-error"),
    ],
)
def test_registrations_are_checked(
    client: TestClient, admin: Headers, change: dict[str, Any], slug: str
) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "actions": ["Stamp"], **change}
    assert_problem(client.post(C, json=body, headers=admin), 422, slug)


def test_one_callback_per_name_and_tenant(
    client: TestClient, admin: Headers, service: Service
) -> None:
    first = register(client, admin, service.url)
    body = {"url": service.url, "conditions": ["Other", "IsBig"]}
    problem = assert_problem(client.post(C, json=body, headers=admin), 422, "invalid-argument")
    assert first["id"] in problem["detail"]
    assert "'IsBig'" in problem["detail"]
    assert client.post(C, json={**body, "conditions": ["Other"]}, headers=admin).status_code == 201


def test_only_admin_keys_manage_callbacks(client: TestClient, make_key: MakeKey) -> None:
    for role in ("service", "user"):
        headers = make_key(role)
        assert_problem(client.get(C, headers=headers), 403, "forbidden")
        body = {"url": "http://127.0.0.1:9/", "actions": ["A"]}
        assert_problem(client.post(C, json=body, headers=headers), 403, "forbidden")
    assert_problem(client.get(C), 401, "unauthorized")


# -- serving actions, conditions and rules -----------------------------------------------------


def test_the_service_runs_actions_decides_conditions_and_rules(
    client: TestClient, admin: Headers, service: Service, payment: Callable[[Headers], None]
) -> None:
    payment(admin)
    register(client, admin, f"{service.url}/acme?secret=1")
    pid = start(client, admin, amount=120)

    submitted = execute(client, admin, pid, "Submit", "alice")
    assert submitted.status_code == 200, submitted.text
    process = submitted.json()["process"]
    assert process["activity"] == "Review"
    assert process["parameters"] == {"Amount": 120, "Stamped": True, "StampedBy": "alice"}
    [stamp] = service.requests("action")
    assert stamp.path == "/acme?secret=1"
    assert stamp.authorization == "Bearer s3cret"
    assert stamp.body == {
        "version": 1,
        "type": "action",
        "name": "Stamp",
        "tenant_id": "acme",
        "process_id": pid,
        "scheme": SCHEME,
        "scheme_version": 1,
        "activity": "Review",
        "state": "Review",
        "previous_activity": "Draft",
        "previous_state": "Draft",
        "executed_transition": "Draft_Review_1",
        "identity": "alice",
        "command": "Submit",
        "parameters": {"Amount": 120, "Draft": 1},
        "parameter": {"Copies": 2},
    }

    # The rule gates the command: only "boss" may approve.
    def commands(identity: str) -> list[str]:
        found = client.get(f"{P}/{pid}/commands", params={"identity": identity}, headers=admin)
        return [c["name"] for c in found.json()]

    assert commands("alice") == []
    assert commands("boss") == ["Approve"]
    checks = service.requests("rule_check")
    assert {(s.body["identity"], s.body["parameter"]) for s in checks} == {
        ("alice", "boss"),
        ("boss", "boss"),
    }
    assert_problem(execute(client, admin, pid, "Approve", "alice"), 403, "command-not-permitted")

    # The condition steers: 120 is over 100.
    approved = execute(client, admin, pid, "Approve", "boss")
    assert approved.json()["process"]["activity"] == "Big"
    [condition] = service.requests("condition")
    assert (condition.body["name"], condition.body["parameter"]) == ("IsBig", {"Over": 100})
    assert condition.body["parameters"]["Amount"] == 120

    small = start(client, admin, amount=50)
    execute(client, admin, small, "Submit", "alice")
    assert execute(client, admin, small, "Approve", "boss").json()["process"]["activity"] == "Small"


def test_the_tenants_callback_wins_over_the_apps_python_action(
    client: TestClient,
    make_key: MakeKey,
    engine: fk.Engine,
    service: Service,
    payment: Callable[[Headers], None],
) -> None:
    @engine.action("Stamp")
    def stamp(ctx: fk.ActionContext, parameter: Any) -> None:
        ctx.process.parameters["Stamped"] = "by Python"

    acme, beta = make_key("admin", "acme"), make_key("admin", "beta")
    payment(acme)
    payment(beta)
    made = register(client, acme, service.url, conditions=[], rules=[])

    served = start(client, acme)
    assert (
        execute(client, acme, served, "Submit", "alice").json()["process"]["parameters"]["Stamped"]
        is True
    )
    other = start(client, beta)
    assert (
        execute(client, beta, other, "Submit", "alice").json()["process"]["parameters"]["Stamped"]
        == "by Python"
    )
    assert len(service.requests("action")) == 1

    # Removed: the Python action serves acme again, at once (this server's cache is dropped).
    client.delete(f"{C}/{made['id']}", headers=acme)
    again = start(client, acme)
    assert (
        execute(client, acme, again, "Submit", "alice").json()["process"]["parameters"]["Stamped"]
        == "by Python"
    )
    assert len(service.requests("action")) == 1


def test_tenants_never_use_or_see_each_others_callbacks(
    client: TestClient,
    make_key: MakeKey,
    service: Service,
    payment: Callable[[Headers], None],
) -> None:
    acme, beta = make_key("admin", "acme"), make_key("admin", "beta")
    payment(acme)
    made = register(client, beta, f"{service.url}/beta")

    # acme has no Stamp of its own: beta's service is never asked.
    pid = start(client, acme)
    before = snapshot(client, acme, pid)
    assert_problem(execute(client, acme, pid, "Submit", "alice"), 503, "action-not-registered")
    assert service.seen == []
    assert snapshot(client, acme, pid) == before

    assert client.get(C, headers=acme).json() == []
    assert_problem(client.get(f"{C}/{made['id']}", headers=acme), 404, "callback-not-found")
    assert_problem(client.delete(f"{C}/{made['id']}", headers=acme), 404, "callback-not-found")
    assert [c["id"] for c in client.get(C, headers=beta).json()] == [made["id"]]


# -- failures: a 502 problem, and nothing written -------------------------------------------------


def answered(status: int, content: bytes, delay: float = 0.0) -> Answer:
    return lambda body: (status, content, delay)


FAILURES = {
    "timeout": (answered(200, b"{}", delay=1.5), "no answer within 300 ms"),
    "server error": (answered(500, b'{"parameters": {}}'), "it answered HTTP 500"),
    "redirect": (answered(302, b""), "it answered HTTP 302"),
    "not json": (answered(200, b"<html>oops</html>"), "not JSON"),
    "NaN": (answered(200, b'{"parameters": {"X": NaN}}'), "not JSON"),
    "not an object": (answered(200, b"[1, 2]"), "not a JSON object"),
    "wrong parameters": (answered(200, b'{"parameters": [1]}'), "'parameters'"),
    "wrong removed": (answered(200, b'{"removed": "Draft"}'), "'removed'"),
    "system parameter": (
        answered(200, b'{"parameters": {"CurrentActivity": "Big"}}'),
        "'CurrentActivity'",
    ),
    "lone surrogate": (answered(200, b'{"parameters": {"X": "\\ud800"}}'), "surrogate"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failing_action_is_a_502_and_rolls_the_command_back(
    client: TestClient,
    admin: Headers,
    engine: fk.Engine,
    service: Service,
    payment: Callable[[Headers], None],
    failure: str,
) -> None:
    @engine.action("Audit")
    def audit(ctx: fk.ActionContext, parameter: Any) -> None:  # writes before the callback
        ctx.engine.add_step(fk.Step("audit/submitted"), connection=ctx.connection)
        ctx.process.parameters["Audited"] = True

    scheme = payment_scheme(review=("Audit", "Stamp"))
    assert client.post("/api/v1/schemes", json=scheme, headers=admin).status_code == 201
    answer, reason = FAILURES[failure]
    service.answers["Stamp"] = answer
    # Only the timeout case needs a short timeout: the others must not meet it on a busy machine.
    timeout_ms = 300 if failure == "timeout" else 10_000
    register(client, admin, f"{service.url}/hook?key=hidden", timeout_ms=timeout_ms)
    pid = start(client, admin)
    before = snapshot(client, admin, pid)

    began = time.monotonic()
    response = execute(client, admin, pid, "Submit", "alice")
    problem = assert_problem(response, 502, "callback-failed")
    assert time.monotonic() - began < 1.4  # no retries; for the timeout, not the service's 1.5 s
    assert problem["callback"] == {"kind": "action", "name": "Stamp", "url": f"{service.url}/hook"}
    assert reason in problem["detail"]
    assert "hidden" not in problem["detail"]
    assert snapshot(client, admin, pid) == before
    assert engine.search(fk.Search(name="audit/submitted"))["ready"] == []


@pytest.mark.parametrize(
    "content", [b'{"result": "yes"}', b'{"result": 1}', b"{}", b"", b'{"result": null}']
)
def test_a_condition_or_rule_answering_wrongly_is_a_502(
    client: TestClient,
    admin: Headers,
    service: Service,
    payment: Callable[[Headers], None],
    content: bytes,
) -> None:
    payment(admin)
    register(client, admin, service.url)
    pid = start(client, admin)
    execute(client, admin, pid, "Submit", "alice")
    before = snapshot(client, admin, pid)

    service.answers["IsBig"] = answered(200, content)
    problem = assert_problem(execute(client, admin, pid, "Approve", "boss"), 502, "callback-failed")
    assert problem["callback"]["kind"] == "condition"
    assert snapshot(client, admin, pid) == before

    service.answers["Approver"] = answered(200, content)
    found = client.get(f"{P}/{pid}/commands", params={"identity": "boss"}, headers=admin)
    assert assert_problem(found, 502, "callback-failed")["callback"]["kind"] == "rule_check"


def test_a_service_that_is_not_there_is_a_502(
    client: TestClient, admin: Headers, payment: Callable[[Headers], None]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    payment(admin)
    register(client, admin, f"http://127.0.0.1:{port}/gone")
    pid = start(client, admin)
    before = snapshot(client, admin, pid)
    problem = assert_problem(execute(client, admin, pid, "Submit", "alice"), 502, "callback-failed")
    assert "ConnectError" in problem["detail"]
    assert snapshot(client, admin, pid) == before


def test_an_empty_answer_changes_nothing(
    client: TestClient, admin: Headers, service: Service, payment: Callable[[Headers], None]
) -> None:
    payment(admin)
    register(client, admin, service.url)
    service.answers["Stamp"] = answered(204, b"")
    pid = start(client, admin)
    process = execute(client, admin, pid, "Submit", "alice").json()["process"]
    assert process["activity"] == "Review"
    assert process["parameters"] == {"Amount": 120, "Draft": 1}


def test_without_httpx_callbacks_are_a_configuration_error(
    client: TestClient,
    admin: Headers,
    service: Service,
    payment: Callable[[Headers], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payment(admin)
    register(client, admin, service.url)
    pid = start(client, admin)
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx now raises ImportError
    problem = assert_problem(
        execute(client, admin, pid, "Submit", "alice"), 503, "configuration-error"
    )
    assert "pip install 'flowkeeper[server]'" in problem["detail"]
    assert service.seen == []


# -- other engines see registrations within their cache time -------------------------------------


def test_another_engine_sees_a_registration_within_its_cache_time(
    db_url: str, engine: fk.Engine, service: Service
) -> None:
    b = fk.SchemeBuilder("Tiny")
    b.activity("Start", initial=True, actions=["Stamp"])
    engine.schemes.save(b.build(), tenant_id="acme")
    with fk.Engine(db_url, callback_cache_seconds=0.5, callback_allowed_hosts=LOCAL) as worker:

        @worker.action("Stamp")
        def stamp(ctx: fk.ActionContext, parameter: Any) -> None:
            ctx.process.parameters["Stamped"] = "by Python"

        def stamped() -> object:
            pid = worker.processes.create("Tiny", tenant_id="acme", identity="x")
            return worker.processes.get(pid).parameters["Stamped"]

        assert stamped() == "by Python"
        engine.callbacks.add(service.url, tenant_id="acme", actions=["Stamp"])
        assert stamped() == "by Python"  # still cached
        time.sleep(0.6)
        assert stamped() is True
        assert worker.callbacks.list(tenant_id="acme")[0].actions == ("Stamp",)


def test_store_checks_its_arguments(engine: fk.Engine) -> None:
    with pytest.raises(fk.InvalidArgument, match="timeout_ms"):
        engine.callbacks.add("http://x.test/", actions=["A"], timeout_ms=True)  # type: ignore[arg-type]
    with pytest.raises(fk.InvalidArgument, match="list of names"):
        engine.callbacks.add("http://x.test/", actions="A")
    with pytest.raises(fk.InvalidArgument, match="visible ASCII"):
        engine.callbacks.add("http://x.test/", actions=["A"], token="a\nb")
    with pytest.raises(fk.InvalidArgument, match="http"):
        engine.callbacks.add("file:///etc/passwd", actions=["A"])
    made = engine.callbacks.add("http://x.test:81/p?q=s3cret", actions=["A", "A"], token="")
    assert made.actions == ("A",)
    assert made.token is None
    assert made.url == "http://x.test:81/p?q=s3cret"
    assert made.shown_url == "http://x.test:81/p"
    assert "s3cret" not in repr(made)
    secret = engine.callbacks.add("http://x.test/", rules=["R"], token="t0ken")
    assert "t0ken" not in repr(secret)
    assert engine.callbacks.get(secret.id).token == "t0ken"


# -- the command line --------------------------------------------------------------------------


def test_cli_add_list_and_remove(db_url: str) -> None:
    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["callbacks", *args, "--database", db_url])
        return result.exit_code, result.output

    code, out = invoke(
        "add", "--url", "http://127.0.0.1:9/hook", "--tenant", "acme", "--token", "t0ken",
        "--action", "Stamp", "--action", "Send", "--rule", "Approver", "--timeout-ms", "800",
        "--allowed-host", "127.0.0.1", "--json",
    )  # fmt: skip
    assert code == 0, out
    made = json.loads(out)
    assert (made["tenant"], made["actions"], made["rules"], made["timeout_ms"]) == (
        "acme", ["Stamp", "Send"], ["Approver"], 800,
    )  # fmt: skip
    assert made["has_token"] is True
    code, out = invoke("add", "--url", "http://127.0.0.1:9/other", "--condition", "IsBig")
    assert code == 1  # loopback, which the servers do not allow by default
    assert "callback_allowed_hosts=['127.0.0.1']" in out
    code, out = invoke("add", "--url", "http://10.1.2.3:9/other", "--condition", "IsBig")
    assert code == 0, out
    assert "Registered callback" in out

    code, out = invoke("list", "--json")
    assert [c["tenant"] for c in json.loads(out)] == ["acme", ""]
    code, out = invoke("list", "--tenant", "acme", "--json")
    assert [c["id"] for c in json.loads(out)] == [made["id"]]
    code, out = invoke("list")
    assert made["id"] in out
    assert "t0ken" not in out

    code, out = invoke("remove", made["id"])
    assert code == 1
    assert "--tenant" in out
    code, out = invoke("remove", made["id"], "--tenant", "acme")
    assert code == 0, out
    assert "Removed callback" in out
    code, out = invoke("list", "--tenant", "acme", "--json")
    assert json.loads(out) == []
    code, out = invoke("add", "--url", "ftp://x", "--action", "A")
    assert code == 1
    assert "InvalidArgument" in out
