"""``flowkeeper serve --processes N``: connections spread over the processes, a process that
dies is replaced, and the processes do not outlive the one that started them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowkeeper.cli.api_processes import reuse_port_supported
from tests.api.test_cli import COMMAND, ROOT, flowkeeper, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not reuse_port_supported(), reason="SO_REUSEPORT spreads only on Linux"),
]

HEALTHZ_COUNT = re.compile(
    r'flowkeeper_http_request_duration_seconds_count\{[^}]*route="/healthz"[^}]*\} (\d+)'
)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"waited in vain for {what}"
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    """The API processes of ``pid`` (not multiprocessing's resource tracker)."""
    found = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "spawn_main"], capture_output=True, text=True
    ).stdout
    return [int(p) for p in found.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    flowkeeper("migrate", "--database", url)
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [*COMMAND, "serve", "--database", url, "--port", str(port), "--no-workers",
         "--processes", "2", "--threads", "2", "--log-level", "warning"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, "the server to answer")
        wait_for(lambda: len(children(process.pid)) == 2, "two API processes")
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def test_connections_are_spread_over_the_processes(
    served: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """16 keep-alive connections opened together: each process's own metrics count the
    requests it answered, so one process holding them all would show 16 on every connection.
    (By the kernel's hash, all 16 land on one of two sockets once in 32,768 runs.)"""
    base, _ = served
    clients = [httpx.Client(base_url=base, timeout=10) for _ in range(16)]
    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        counts = []
        for client in clients:
            found = HEALTHZ_COUNT.search(client.get("/metrics").text)
            counts.append(int(found.group(1)) if found else 0)
    finally:
        for client in clients:
            client.close()
    assert len(set(counts)) == 2, counts
    assert sum(set(counts)) >= 16, counts


def test_a_process_that_dies_is_replaced(served: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, process = served
    first, second = children(process.pid)
    os.kill(first, signal.SIGKILL)
    wait_for(
        lambda: len(children(process.pid)) == 2 and first not in children(process.pid),
        "a new API process",
    )
    assert second in children(process.pid)
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_the_processes_stop_when_their_parent_is_killed(
    served: tuple[str, subprocess.Popen[bytes]],
) -> None:
    _, process = served
    pids = children(process.pid)
    process.kill()
    process.wait()
    wait_for(lambda: not any(alive(p) for p in pids), "the orphaned processes to stop", 15)
