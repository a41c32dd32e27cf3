"""Where callbacks may send requests: the address policy, redirects, credentials in URLs.

By default a callback may not reach loopback, link-local (the cloud metadata service),
unspecified, multicast or reserved addresses; ``Engine(callback_allowed_hosts=…)`` widens that
and ``Engine(callback_blocked_networks=…)`` narrows it. Hosts are checked when a callback is
added (addresses and ``localhost``, without DNS) and on every connection (every address the
host resolves to, before anything is sent). The engines here are built per test, with the
options each needs; ``dns`` makes test names resolve to chosen addresses.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner

import flowkeeper as fk
from flowkeeper.api import create_app
from flowkeeper.cli import app as cli
from tests.api.conftest import Headers, TestClient, assert_problem
from tests.api.test_callbacks import (
    LOCAL,
    C,
    Service,
    answered,
    execute,
    payment_scheme,
    register,
    snapshot,
    start,
)


@dataclass
class Api:
    engine: fk.Engine
    client: TestClient
    admin: Headers


MakeApi = Callable[..., Api]


@pytest.fixture
def api(db_url: str) -> Iterator[MakeApi]:
    """``api(**engine_options)``: the HTTP API over a new engine on the test database, with an
    admin key of tenant ``acme``. The first one saves the Payment scheme, whose Review runs
    ``Audit`` (a Python action that adds a step) and then ``Stamp``."""
    with ExitStack() as stack:

        def make(**options: Any) -> Api:
            engine = stack.enter_context(fk.Engine(db_url, **options))

            @engine.action("Audit")
            def audit(ctx: fk.ActionContext, parameter: Any) -> None:
                ctx.engine.add_step(fk.Step("audit/submitted"), connection=ctx.connection)

            app = create_app(engine)
            client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            secret = app.state.flowkeeper_keys.create(role="admin", tenant_id="acme").secret
            made = Api(engine, client, {"Authorization": f"Bearer {secret}"})
            if not engine.schemes.list(tenant_id="acme"):
                scheme = payment_scheme(review=("Audit", "Stamp"))
                saved = client.post("/api/v1/schemes", json=scheme, headers=made.admin)
                assert saved.status_code == 201, saved.text
            return made

        yield make


@pytest.fixture
def service() -> Iterator[Service]:
    made = Service()
    yield made
    made.close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """``dns[name] = [[addresses of the 1st look-up], [of the 2nd], …]`` (the last answer
    repeats); other names go to the real resolver. ``dns["looked up"]`` lists the names."""
    answers: dict[str, list[list[str]]] = {"looked up": []}
    real = socket.getaddrinfo

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        if host not in answers or flags & socket.AI_NUMERICHOST:
            return real(host, port, family, type, proto, flags)
        answers["looked up"].append(host)
        found = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
        numeric = flags | socket.AI_NUMERICHOST
        return [info for a in found for info in real(a, port, family, type, proto, numeric)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def audited(api: Api) -> list[Any]:
    found: list[Any] = api.engine.search(fk.Search(name="audit/submitted"))["ready"]
    return found


def cli_callbacks(db_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["callbacks", *args, "--database", db_url])
    return result.exit_code, result.output


# -- when a callback is added ----------------------------------------------------------------------

REFUSED = {
    "http://127.0.0.1:8080/hook?key=s3cret": ("a loopback address", "'127.0.0.1'"),
    "http://[::1]:8080/hook": ("a loopback address", "'::1'"),
    "http://localhost:8080/hook": ("a loopback name", "'localhost'"),
    "http://api.localhost/hook": ("a loopback name", "'api.localhost'"),
    "http://127.1/hook": ("127.1 (127.0.0.1) is a loopback address", "'127.0.0.1'"),
    "http://2130706433/hook": ("(127.0.0.1) is a loopback address", "'127.0.0.1'"),
    "http://[::ffff:127.0.0.1]/hook": ("the IPv6 form of 127.0.0.1", "'::ffff:127.0.0.1'"),
    "http://169.254.169.254/latest/meta-data/": (
        "a link-local address (the cloud metadata service)",
        "'169.254.169.254'",
    ),
    "http://[fe80::1]/hook": ("a link-local address", "'fe80::1'"),
    "http://0.0.0.0:8080/hook": ("an unspecified address", "'0.0.0.0'"),
    "http://224.0.0.1/hook": ("a multicast address", "'224.0.0.1'"),
    "http://240.0.0.1/hook": ("a reserved address", "'240.0.0.1'"),
}


@pytest.mark.parametrize("url", list(REFUSED))
def test_special_addresses_are_refused_when_added(api: MakeApi, url: str) -> None:
    a = api()
    body = {"url": url, "actions": ["Stamp"]}
    problem = assert_problem(a.client.post(C, json=body, headers=a.admin), 422, "invalid-argument")
    what, allowed = REFUSED[url]
    assert what in problem["detail"]
    assert f"Engine(callback_allowed_hosts=[{allowed}])" in problem["detail"]
    assert "s3cret" not in problem["detail"]
    assert a.client.get(C, headers=a.admin).json() == []
    with pytest.raises(fk.InvalidArgument, match="callbacks may not reach such addresses"):
        a.engine.callbacks.add(url, tenant_id="acme", actions=["Stamp"])


def test_private_networks_and_names_are_accepted_by_default(api: MakeApi) -> None:
    a = api()
    hosts = ["10.0.0.1", "172.16.0.1", "192.168.1.10", "[fd00::1]", "callbacks.example.com"]
    for number, host in enumerate(hosts):
        body = {"url": f"http://{host}:8080/hook", "actions": [f"A{number}"]}
        response = a.client.post(C, json=body, headers=a.admin)
        assert response.status_code == 201, response.text


@pytest.mark.parametrize("allowed", [["127.0.0.1"], ["127.0.0.0/8", "::1"], ["localhost"]])
def test_the_allow_list_lets_the_operators_hosts_through(
    api: MakeApi, service: Service, allowed: list[str]
) -> None:
    a = api(callback_allowed_hosts=allowed)
    host = "localhost" if allowed == ["localhost"] else "127.0.0.1"
    register(a.client, a.admin, f"http://{host}:{service.server.server_port}/hook")
    pid = start(a.client, a.admin)
    submitted = execute(a.client, a.admin, pid, "Submit", "alice")
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["process"]["parameters"]["Stamped"] is True
    assert [s.path for s in service.requests("action")] == ["/hook"]
    # Only what is listed: the metadata service stays out of reach.
    body = {"url": "http://169.254.169.254/", "actions": ["Other"]}
    assert_problem(a.client.post(C, json=body, headers=a.admin), 422, "invalid-argument")


def test_blocked_networks_narrow_the_policy(api: MakeApi, dns: dict[str, list[list[str]]]) -> None:
    dns["internal.test"] = [["10.9.9.9"]]
    a = api(
        callback_blocked_networks=["10.0.0.0/8", "fc00::/7"], callback_allowed_hosts=["10.1.2.3"]
    )

    def add(url: str, name: str) -> Any:
        return a.client.post(C, json={"url": url, "actions": [name]}, headers=a.admin)

    problem = assert_problem(add("http://10.9.9.9/hook", "A"), 422, "invalid-argument")
    assert "an address in 10.0.0.0/8, which callback_blocked_networks refuses" in problem["detail"]
    assert_problem(add("http://[fd00::1]/hook", "A"), 422, "invalid-argument")
    assert add("http://10.1.2.3/hook", "A").status_code == 201  # allowed wins
    assert add("http://192.168.1.10/hook", "B").status_code == 201

    # A name is checked when it is called: internal.test resolves into 10/8.
    register(a.client, a.admin, "http://internal.test/hook", actions=["Stamp"], conditions=[])
    pid = start(a.client, a.admin)
    problem = assert_problem(
        execute(a.client, a.admin, pid, "Submit", "alice"), 502, "callback-failed"
    )
    assert "internal.test resolves to 10.9.9.9, an address in 10.0.0.0/8" in problem["detail"]


def test_the_options_are_checked() -> None:
    with pytest.raises(fk.InvalidArgument, match="must be a list of strings"):
        fk.Engine("sqlite://", callback_allowed_hosts="127.0.0.1")
    with pytest.raises(fk.InvalidArgument, match="neither a host name nor an address"):
        fk.Engine("sqlite://", callback_allowed_hosts=["http://callbacks.internal/"])
    with pytest.raises(fk.InvalidArgument, match="no scheme, port or wildcard"):
        fk.Engine("sqlite://", callback_allowed_hosts=["*.internal"])
    with pytest.raises(fk.InvalidArgument, match="host bits set"):
        fk.Engine("sqlite://", callback_blocked_networks=["10.0.0.1/8"])
    with pytest.raises(fk.InvalidArgument, match="callback_blocked_networks"):
        fk.Engine("sqlite://", callback_blocked_networks=["callbacks.internal"])
    engine = fk.Engine("sqlite://", callback_allowed_hosts=["LocalHost.", "::1/128"])
    assert engine.callbacks.policy.allowed_names == {"localhost"}
    engine.close()


# -- when a callback is called ------------------------------------------------------------------


def test_a_name_resolving_to_a_forbidden_address_is_refused_before_sending(
    api: MakeApi, service: Service, dns: dict[str, list[list[str]]]
) -> None:
    dns["callbacks.test"] = [["127.0.0.1"]]
    a = api()
    # Names are not resolved when a callback is added: it is accepted.
    register(a.client, a.admin, f"http://callbacks.test:{service.server.server_port}/hook")
    pid = start(a.client, a.admin)
    before = snapshot(a.client, a.admin, pid)

    response = execute(a.client, a.admin, pid, "Submit", "alice")
    problem = assert_problem(response, 502, "callback-failed")
    detail = problem["detail"]
    assert "its host callbacks.test resolves to 127.0.0.1, a loopback address" in detail
    assert "nothing was sent" in detail
    assert "Engine(callback_allowed_hosts=['callbacks.test']) (this name)" in detail
    assert problem["callback"]["name"] == "Stamp"
    assert service.seen == []
    assert snapshot(a.client, a.admin, pid) == before  # the transition rolled back
    assert audited(a) == []  # and what the action before it wrote
    with pytest.raises(fk.CallbackFailed, match=r"resolves to 127\.0\.0\.1"):
        a.engine.processes.execute(pid, "Submit", identity="alice", tenant_id="acme")


def test_a_loopback_callback_added_where_it_was_allowed_is_refused_where_it_is_not(
    api: MakeApi, service: Service
) -> None:
    permissive = api(callback_allowed_hosts=["localhost"])
    strict = api()
    register(permissive.client, permissive.admin, f"http://localhost:{service.server.server_port}")
    pid = start(strict.client, strict.admin)

    problem = assert_problem(
        execute(strict.client, strict.admin, pid, "Submit", "alice"), 502, "callback-failed"
    )
    assert "its host localhost is a loopback name" in problem["detail"]
    assert "Engine(callback_allowed_hosts=['localhost'])" in problem["detail"]
    assert service.seen == []

    moved = execute(permissive.client, permissive.admin, pid, "Submit", "alice")
    assert moved.status_code == 200, moved.text
    assert len(service.requests("action")) == 1


def test_the_address_checked_is_the_address_connected_to(
    api: MakeApi, service: Service, dns: dict[str, list[list[str]]]
) -> None:
    # A DNS server that answers an allowed address to one look-up and a loopback one to the
    # next (DNS rebinding) gets a single look-up per connection: the check's.
    dns["rebind.test"] = [["192.0.2.1"], ["127.0.0.1"]]
    a = api()
    url = f"http://rebind.test:{service.server.server_port}/hook"
    register(a.client, a.admin, url, timeout_ms=300)
    pid = start(a.client, a.admin)
    assert_problem(execute(a.client, a.admin, pid, "Submit", "alice"), 502, "callback-failed")
    assert dns["looked up"] == ["rebind.test"]
    assert service.seen == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(api: MakeApi, service: Service, status: int) -> None:
    a = api(callback_allowed_hosts=LOCAL)
    service.answers["Stamp"] = answered(status, b"")
    service.headers["Location"] = f"{service.url}/followed"
    register(a.client, a.admin, f"{service.url}/hook")
    pid = start(a.client, a.admin)
    before = snapshot(a.client, a.admin, pid)

    problem = assert_problem(
        execute(a.client, a.admin, pid, "Submit", "alice"), 502, "callback-failed"
    )
    assert (
        f"it answered HTTP {status}, a redirect, which callbacks do not follow" in problem["detail"]
    )
    assert "register the URL it redirects to" in problem["detail"]
    assert [s.path for s in service.seen] == ["/hook"]
    assert snapshot(a.client, a.admin, pid) == before


def test_requests_go_through_the_proxy_the_environment_names(
    api: MakeApi, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("http_proxy", service.url)  # the service answers as the proxy too
    a = api()  # the proxy's own address is the operator's choice: not checked
    made = register(a.client, a.admin, "http://callbacks.example/hook?key=s3cret")
    pid = start(a.client, a.admin)
    moved = execute(a.client, a.admin, pid, "Submit", "alice")
    assert moved.status_code == 200, moved.text
    assert [s.path for s in service.seen] == ["http://callbacks.example/hook?key=s3cret"]

    # The proxy resolves names; addresses are still checked here, before anything is sent.
    a.client.delete(f"{C}/{made['id']}", headers=a.admin)
    permissive = api(callback_allowed_hosts=["169.254.169.254"])
    register(permissive.client, permissive.admin, "http://169.254.169.254/latest/meta-data/")
    pid = start(a.client, a.admin)
    problem = assert_problem(
        execute(a.client, a.admin, pid, "Submit", "alice"), 502, "callback-failed"
    )
    assert "the cloud metadata service" in problem["detail"]
    assert len(service.seen) == 1


# -- credentials and queries in URLs -------------------------------------------------------------


def test_urls_with_credentials_are_refused(api: MakeApi, db_url: str) -> None:
    a = api()
    url = "https://alice:hunter2@callbacks.example.com/hook"
    body = {"url": url, "actions": ["Stamp"]}
    problem = assert_problem(a.client.post(C, json=body, headers=a.admin), 422, "invalid-argument")
    assert "user:password@" in problem["detail"]
    assert "token" in problem["detail"]
    assert "hunter2" not in problem["detail"]
    assert "alice" not in problem["detail"]
    with pytest.raises(fk.InvalidArgument, match="send the secret as the token"):
        a.engine.callbacks.add(url, actions=["Stamp"])
    code, out = cli_callbacks(db_url, "add", "--url", url, "--action", "Stamp")
    assert code == 1
    assert "credentials" in out
    assert "hunter2" not in out


def test_listings_show_urls_without_their_query(
    api: MakeApi, service: Service, db_url: str
) -> None:
    a = api(callback_allowed_hosts=LOCAL)
    made = register(a.client, a.admin, f"{service.url}/hook?key=s3cret#part")
    assert made["url"] == f"{service.url}/hook"
    listed = a.client.get(C, headers=a.admin)
    assert listed.json() == [made]
    assert "s3cret" not in listed.text
    assert "s3cret" not in a.client.get(f"{C}/{made['id']}", headers=a.admin).text
    assert "s3cret" not in a.client.get("/openapi.json").text

    pid = start(a.client, a.admin)  # the request itself goes to the full URL
    assert execute(a.client, a.admin, pid, "Submit", "alice").status_code == 200
    assert [s.path for s in service.seen] == ["/hook?key=s3cret"]

    code, out = cli_callbacks(db_url, "list", "--json")
    assert code == 0, out
    assert [c["url"] for c in json.loads(out)] == [f"{service.url}/hook"]
    code, out = cli_callbacks(db_url, "list")
    assert code == 0, out
    assert made["id"] in out
    assert "s3cret" not in out
    for extra in ((), ("--json",)):
        code, out = cli_callbacks(
            db_url, "add", "--url", "http://callbacks.example/x?token=s3cret",
            "--rule", f"Rule{len(extra)}", *extra,
        )  # fmt: skip
        assert code == 0, out
        assert "http://callbacks.example/x" in out
        assert "s3cret" not in out
