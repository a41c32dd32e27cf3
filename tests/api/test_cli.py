"""``flowkeeper keys`` and ``flowkeeper serve``, the latter as a real server in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import flowkeeper as fk
from flowkeeper.api.keys import KeyStore
from flowkeeper.cli import app
from tests.processes.vacation import SCHEME, VACATION_XML

ROOT = Path(__file__).parents[2]
SCRIPT = Path(sys.executable).parent / "flowkeeper"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "flowkeeper.cli"]
"""The installed ``flowkeeper`` command (the module when the script is not installed)."""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_keys_create_list_and_revoke(db_url: str) -> None:
    code, out = invoke(
        "keys", "create", "--role", "user", "--tenant", "acme", "--identity", "alice",
        "--description", "web ui", "--database", db_url, "--json",
    )  # fmt: skip
    assert code == 0, out
    made = json.loads(out)
    assert made["key"].startswith("fk_")
    with fk.Engine(db_url) as engine:
        key = KeyStore(engine).verify(made["key"])
        assert key is not None
        assert (key.tenant_id, key.role, key.identity) == ("acme", "user", "alice")

    code, out = invoke("keys", "list", "--database", db_url, "--json")
    [listed] = json.loads(out)
    assert made["key"] not in out
    assert (listed["id"], listed["prefix"], listed["revoked_at"]) == (
        made["id"],
        made["key"][:10],
        None,
    )
    code, out = invoke("keys", "list", "--database", db_url)
    assert made["id"] in out
    assert made["key"] not in out

    code, out = invoke("keys", "revoke", made["id"], "--database", db_url)
    assert code == 0, out
    assert "Revoked" in out
    with fk.Engine(db_url) as engine:
        assert KeyStore(engine).verify(made["key"]) is None


def test_keys_create_prints_the_key_once_for_humans(db_url: str) -> None:
    code, out = invoke("keys", "create", "--role", "admin", "--database", db_url)
    assert code == 0, out
    assert "fk_" in out
    assert "not shown again" in out


def test_keys_errors_are_one_line(db_url: str) -> None:
    code, out = invoke("keys", "create", "--role", "user", "--database", db_url)
    assert code == 1
    assert "identity is required" in out
    code, out = invoke("keys", "revoke", "0000", "--database", db_url)
    assert code == 1
    assert "ApiKeyNotFound" in out
    code, out = invoke("keys", "create", "--role", "root", "--database", db_url)
    assert code == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def flowkeeper(*args: str) -> str:
    done = subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(params=[1, 2], ids=["one process", "two API processes"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """``flowkeeper serve`` on SQLite and a free port; its URL, an admin key of tenant acme
    and one of the default tenant (which sees the process timers). With two API processes the
    workers run in the process that started them."""
    url = f"sqlite:///{tmp_path / 'served.db'}"
    flowkeeper("migrate", "--database", url)
    acme = json.loads(flowkeeper("keys", "create", "--tenant", "acme", "--role", "admin",
                                 "--database", url, "--json"))["key"]  # fmt: skip
    default = json.loads(
        flowkeeper("keys", "create", "--role", "admin", "--database", url, "--json")
    )["key"]
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [*COMMAND, "serve", "--database", url, "--port", str(port),
         "--app", "tests.api.server_app:engine", "--workers", "2",
         "--processes", str(request.param)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield base, acme, default
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()
        output = (tmp_path / "serve.log").read_text()
        assert "Traceback" not in output, output
        assert "Finished server process" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.slow
@pytest.mark.databases("sqlite")
def test_serve_end_to_end(server: tuple[str, str, str], db: str) -> None:
    base, acme, default = server
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {acme}"}, timeout=10)
    saved = client.post(
        "/api/v1/schemes", content=VACATION_XML, headers={"Content-Type": "application/xml"}
    )
    assert saved.json() == {"name": SCHEME, "version": 1}
    created = client.post(
        "/api/v1/processes",
        json={"scheme": SCHEME, "identity": "alice", "parameters": {"Author": "alice", "Sum": 5}},
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    commands = client.get(f"/api/v1/processes/{pid}/commands", params={"identity": "alice"})
    assert [c["name"] for c in commands.json()] == ["StartSigning"]
    executed = client.post(
        f"/api/v1/processes/{pid}/commands/StartSigning", json={"identity": "alice"}
    )
    assert executed.json()["executed"] is True
    assert executed.json()["process"]["activity"] == "ManagerSigning"
    assert client.get("/openapi.json").json()["info"]["title"] == "Flowkeeper"

    # The process's timer is a step of its tenant, invisible to other tenants; the workers in
    # the server's process fire it once it is due.
    other = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {default}"})
    ready = {"search_key": pid, "queue": "ready"}
    assert other.get("/api/v1/steps", params=ready).json()["items"] == []
    timers = client.get("/api/v1/steps", params=ready).json()["items"]
    assert [t["correlation_id"] for t in timers] == ["SendToBigBoss"]
    assert client.post(f"/api/v1/steps/{timers[0]['id']}/activate").json() == {"activated": True}
    deadline = time.monotonic() + 20
    while client.get(f"/api/v1/processes/{pid}").json()["activity"] != "BigBossSigning":
        assert time.monotonic() < deadline, "the timer did not fire"
        time.sleep(0.1)
