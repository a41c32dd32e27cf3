"""HTTP load on ``flowkeeper serve``, beside the same operations through the Python API.

    python benchmarks/http_load.py [--database URL] [--duration 10] [--clients 16]
        [--processes 256] [--client-processes 1] [--json]

1. Migrates the database, makes an admin key with ``flowkeeper keys create``, starts
   ``flowkeeper serve --no-workers`` on a free loopback port (or, with ``--server profiled``,
   one API process of its own), uploads a ping-pong
   scheme (A ⇄ B by the commands Go and Back, no restrictions) as JSON and creates
   ``--processes`` processes through the API.
2. Times, for ``--duration`` seconds after ``--warmup`` seconds:

   - ``POST /api/v1/processes/{id}/commands/{Go|Back}``: each of ``--clients`` concurrent
     clients (asyncio tasks on one ``httpx.AsyncClient`` with a pool of as many connections)
     on its own share of the processes, alternating Go and Back;
   - ``GET /api/v1/processes/{id}`` the same way;
   - in the same run, the *ceiling*: ``engine.processes.execute`` and ``engine.processes.get``
     on the same processes and database, with as many threads as clients, in this process.

   It prints requests/s, p50/p95/p99 latency, the ratio to the ceiling, the CPU used by the
   server, by the load generator and by the whole machine (cores busy on average), the
   server's CPU per request and the PostgreSQL sessions opened meanwhile.

The load generator shares the machine's cores with the server and the database: its CPU is
reported so you can see what it took. ``--client-processes N`` runs the clients in N
processes of their own (in addition to the server's); ``--client raw`` uses
:class:`RawConnection` instead of httpx, which costs a twentieth of the CPU per request.

The server's settings are ``flowkeeper serve``'s own: ``--server-processes`` (its
``--processes``), ``--threads``, ``--pool-size``, ``--max-overflow``, ``--http``, ``--loop``.

``--server profiled`` starts one API process of this script's own, built the way ``serve``
builds one; with ``FK_HTTP_BENCH_PROFILE=path.prof`` it profiles that server with cProfile in
every thread (the event loop and the thread pool that runs engine calls) and writes the merged
statistics to ``path.prof`` when it stops (``python -m pstats path.prof``).
"""

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

DEFAULT_DATABASE = "postgresql://root@127.0.0.1:5432/fk_bench_http"
TENANT = "http-bench"
SCHEME = "HttpPingPong"
PING_PONG: dict[str, Any] = {
    "name": SCHEME,
    "activities": [{"name": "A", "state": "A", "initial": True}, {"name": "B", "state": "B"}],
    "transitions": [
        {"name": "A_B", "from": "A", "to": "B", "trigger": {"type": "Command", "name": "Go"}},
        {"name": "B_A", "from": "B", "to": "A", "trigger": {"type": "Command", "name": "Back"}},
    ],
    "commands": [{"name": "Go"}, {"name": "Back"}],
}
"""A ⇄ B by Go and Back, without restrictions, conditions or actions (the scheme's JSON shape)."""
NEXT_COMMAND = {"A": "Go", "B": "Back"}
OTHER = {"A": "B", "B": "A"}
FLOWKEEPER = [sys.executable, "-m", "flowkeeper.cli"]
PROFILE_VARIABLE = "FK_HTTP_BENCH_PROFILE"
OPERATIONS = ("command", "get")


@dataclass
class Config:
    """What to run, and how the server is started."""

    database: str = DEFAULT_DATABASE
    duration: float = 10.0
    warmup: float = 1.0
    clients: int = 16
    processes: int = 256
    operations: Sequence[str] = OPERATIONS
    ceiling: bool = True
    client_processes: int = 1
    client: str = "httpx"
    """The load generator: ``httpx`` (``httpx.AsyncClient``) or ``raw`` (:class:`RawConnection`,
    a minimal keep-alive HTTP/1.1 client, to tell what httpx itself costs)."""
    server: str = "serve"
    """``serve`` (the ``flowkeeper serve`` command) or ``profiled`` (one API process started by
    this script, as ``serve`` builds it, that ``FK_HTTP_BENCH_PROFILE`` can profile)."""
    log_level: str = "warning"
    with_workers: bool = False
    """``serve`` only: run the step workers too (``--no-workers`` otherwise)."""
    http: str = "auto"
    loop: str = "auto"
    server_processes: int = 1
    """``serve`` only: ``--processes``."""
    threads: int = 0
    """Threads per API process for engine calls (0: ``serve``'s default)."""
    pool_size: int = 0
    """Connections each API process keeps (0: ``serve``'s default, as many as threads); the
    ceiling's engine gets the same pool."""
    max_overflow: int = -1
    """Extra connections when busy (-1: ``serve``'s default)."""
    pre_ping: bool = False
    """``serve --pre-ping``: test each connection before use."""
    server_log: str | None = None
    """Where to keep the server's output (a temporary file otherwise)."""

    def serve_settings(self) -> Any:
        """The settings as ``flowkeeper serve`` builds an API process from them (the ceiling's
        engine is built the same way, so that it gets the same pool)."""
        from flowkeeper.api import DEFAULT_THREADS
        from flowkeeper.cli.serve import ServeSettings

        return ServeSettings(
            database=self.database,
            threads=self.threads or DEFAULT_THREADS,
            pool_size=self.pool_size or None,
            max_overflow=None if self.max_overflow < 0 else self.max_overflow,
            pre_ping=self.pre_ping,
        )

    def serve_options(self) -> list[str]:
        """The settings as ``flowkeeper serve`` options."""
        options = ["--http", self.http, "--loop", self.loop]
        if self.pre_ping:
            options.append("--pre-ping")
        if self.threads:
            options += ["--threads", str(self.threads)]
        if self.pool_size:
            options += ["--pool-size", str(self.pool_size)]
        if self.max_overflow >= 0:
            options += ["--max-overflow", str(self.max_overflow)]
        return options


@dataclass
class Measured:
    """One operation timed one way."""

    operation: str
    via: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    client_cpu: float
    """Cores the load generator (or, for the ceiling, this process) used on average."""
    server_cpu: float | None
    """Cores the server's processes used on average."""
    machine_cpu: float | None
    """Cores busy on the whole machine on average (the database, other work included)."""
    sessions_opened: int | None = None
    """Database sessions opened meanwhile (PostgreSQL): pool churn shows here."""
    ceiling_rate: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ratio(self) -> float | None:
        return self.rate / self.ceiling_rate if self.ceiling_rate else None

    @property
    def server_ms_per_request(self) -> float | None:
        """The server's CPU time per answered request, in milliseconds."""
        if self.via != "http" or self.server_cpu is None or not self.requests:
            return None
        return self.server_cpu * self.seconds / self.requests * 1000

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rate": self.rate,
            "ratio": self.ratio,
            "server_ms_per_request": self.server_ms_per_request,
        }


@dataclass
class Report:
    """A whole run: its settings and every measurement."""

    config: dict[str, Any]
    results: list[Measured] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "results": [r.to_dict() for r in self.results]}


# -- measuring ---------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values, nearest rank; 0 if there are none."""
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def own_cpu() -> float:
    """CPU seconds this process used so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu(pid: int) -> float | None:
    """CPU seconds used so far by process ``pid`` and its descendants (Linux ``/proc``)."""
    try:
        parents: dict[int, int] = {}
        times: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    except OSError:
        return None
    wanted, total = [pid], 0.0
    while wanted:
        current = wanted.pop()
        total += times.get(current, 0.0)
        wanted.extend(child for child, parent in parents.items() if parent == current)
    return total


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far (``/proc/stat``)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(v) / TICKS for v in first[:8]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def database_sessions(engine: Any) -> int | None:
    """How many sessions PostgreSQL has opened on the database so far (None elsewhere)."""
    if engine.kind != "postgresql":
        return None
    with engine.database.connect() as connection:
        value = connection.exec_driver_sql(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).scalar()
    return None if value is None else int(value)


class CpuWindow:
    """Between :meth:`start` and :meth:`stop`: the cores used on average by the server's
    process tree and by the machine, and the database sessions opened (PostgreSQL)."""

    def __init__(self, server_pid: int | None, engine: Any = None) -> None:
        self.server_pid = server_pid
        self.engine = engine

    def start(self) -> None:
        self.sessions0 = None if self.engine is None else database_sessions(self.engine)
        self.server0 = tree_cpu(self.server_pid) if self.server_pid else None
        self.machine0 = machine_busy()
        self.wall0 = time.monotonic()

    def stop(self) -> tuple[float | None, float | None, int | None]:
        wall = time.monotonic() - self.wall0
        server = tree_cpu(self.server_pid) if self.server_pid else None
        machine = machine_busy()
        server_cores = (
            None if server is None or self.server0 is None else (server - self.server0) / wall
        )
        machine_cores = None
        if machine is not None and self.machine0 is not None and machine[1] > self.machine0[1]:
            share = (machine[0] - self.machine0[0]) / (machine[1] - self.machine0[1])
            machine_cores = share * (os.cpu_count() or 1)
        sessions = None if self.engine is None else database_sessions(self.engine)
        opened = None if sessions is None or self.sessions0 is None else sessions - self.sessions0
        return server_cores, machine_cores, opened


@dataclass
class LoadResult:
    """What one load generator (a process of clients, or the ceiling's threads) saw."""

    requests: int
    errors: int
    latencies: list[float]
    cpu_seconds: float
    activities: dict[str, str]
    first_error: str | None = None


def shares(items: Sequence[str], parts: int) -> list[list[str]]:
    """``items`` dealt round-robin into ``parts`` lists (the processes each client owns)."""
    return [list(items[i::parts]) for i in range(parts)]


# -- the HTTP load -----------------------------------------------------------------------------


@dataclass
class HttpLoad:
    """One load generator's job: its clients, the processes each one owns, the window."""

    base: str
    key: str
    operation: str
    owned: list[list[str]]
    activities: dict[str, str]
    start_at: float
    """``time.time()`` at which the warm-up starts (so that several processes start together)."""
    warmup: float
    duration: float
    client: str = "httpx"
    """``httpx`` (an ``httpx.AsyncClient``) or ``raw`` (:class:`RawConnection`)."""


Call = Callable[[str, str], Awaitable[tuple[int, bytes]]]
"""``await call(method, path)``: the status and body of a request without a body."""


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on an asyncio stream, to tell what the load
    generator costs: it writes a fixed request and reads the head and a ``Content-Length``
    body, nothing else (no chunked bodies, no redirects, no TLS)."""

    def __init__(self, base: str, key: str) -> None:
        url = httpx.URL(base)
        self.host, self.port = url.host, url.port or 80
        self.headers = (
            f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode("ascii")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __call__(self, method: str, path: str) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"{method} {path} HTTP/1.1\r\n".encode("ascii") + self.headers)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        at = lowered.find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"the raw client reads Content-Length bodies only: {head!r}")
        length = int(lowered[at + 17 : lowered.index(b"\r\n", at + 2)])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def run_http_load(job: HttpLoad) -> LoadResult:
    """Run the job's clients (in this process, on a new event loop) and return what they saw."""
    return asyncio.run(_http_load(job))


async def _http_load(job: HttpLoad) -> LoadResult:
    if job.client == "raw":
        connections = [RawConnection(job.base, job.key) for _ in job.owned]
        try:
            return await _drive(job, connections)
        finally:
            for connection in connections:
                connection.close()
    if job.client != "httpx":
        raise ValueError(f"the client is httpx or raw, not {job.client!r}")
    clients = len(job.owned)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {job.key}"}
    async with httpx.AsyncClient(
        base_url=job.base, headers=headers, limits=limits, timeout=30
    ) as client:

        async def call(method: str, path: str) -> tuple[int, bytes]:
            response = await client.request(method, path)
            return response.status_code, response.content

        return await _drive(job, [call] * clients)


async def _drive(job: HttpLoad, calls: Sequence[Call]) -> LoadResult:
    """The clients' loops, each with its own ``call``, from ``start_at`` to the window's end."""
    activities = dict(job.activities)
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0}
    first_error: list[str] = []
    delay = job.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    begin = time.perf_counter()
    measure_from = begin + job.warmup
    measure_to = measure_from + job.duration
    cpu: list[float] = []

    async def one_client(owned: list[str], call: Call) -> None:
        turn = 0
        while True:
            pid = owned[turn % len(owned)]
            turn += 1
            started = time.perf_counter()
            if started >= measure_to:
                return
            if job.operation == "command":
                command = NEXT_COMMAND[activities[pid]]
                status, body = await call("POST", f"/api/v1/processes/{pid}/commands/{command}")
                if status in (200, 409):  # 409: it was in the other activity
                    activities[pid] = OTHER[activities[pid]]
            else:
                status, body = await call("GET", f"/api/v1/processes/{pid}")
            ended = time.perf_counter()
            if measure_from <= started and ended <= measure_to:
                if status == 200:
                    counts["requests"] += 1
                    latencies.append(ended - started)
                else:
                    counts["errors"] += 1
                    if not first_error:
                        first_error.append(f"{status} {body[:300].decode(errors='replace')}")

    async def cpu_marks() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu.append(own_cpu())
        await asyncio.sleep(max(0.0, measure_to - time.perf_counter()))
        cpu.append(own_cpu())

    await asyncio.gather(
        cpu_marks(), *(one_client(o, c) for o, c in zip(job.owned, calls, strict=True) if o)
    )
    return LoadResult(
        counts["requests"],
        counts["errors"],
        latencies,
        cpu[1] - cpu[0] if len(cpu) == 2 else 0.0,
        activities,
        first_error[0] if first_error else None,
    )


def http_phase(
    config: Config, base: str, key: str, operation: str, ids: list[str], activities: dict[str, str]
) -> list[LoadResult]:
    """The HTTP load of one operation, in this process or in ``client_processes`` processes."""
    owned = shares(ids, config.clients)
    parts = max(1, min(config.client_processes, config.clients))
    if parts == 1:
        job = HttpLoad(
            base,
            key,
            operation,
            owned,
            activities,
            time.time(),
            config.warmup,
            config.duration,
            config.client,
        )
        return [run_http_load(job)]
    start_at = time.time() + 3.0  # the spawned processes import httpx meanwhile
    jobs = [
        HttpLoad(
            base,
            key,
            operation,
            owned[i::parts],
            {p: activities[p] for share in owned[i::parts] for p in share},
            start_at,
            config.warmup,
            config.duration,
            config.client,
        )
        for i in range(parts)
    ]
    with multiprocessing.get_context("spawn").Pool(parts) as pool:
        return pool.map(run_http_load, jobs)


# -- the ceiling: the Python API in threads ----------------------------------------------------


def python_phase(
    config: Config, engine: Any, operation: str, ids: list[str], activities: dict[str, str]
) -> LoadResult:
    """The same operation through ``engine.processes`` with one thread per client."""
    owned = shares(ids, config.clients)
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0}
    first_error: list[str] = []
    barrier = threading.Barrier(len(owned) + 1)
    window: list[float] = []

    def one_client(mine: list[str]) -> None:
        local: list[float] = []
        requests = errors = 0
        barrier.wait()
        measure_from, measure_to = window
        turn = 0
        while mine:
            pid = mine[turn % len(mine)]
            turn += 1
            started = time.perf_counter()
            if started >= measure_to:
                break
            failed = None
            try:
                if operation == "command":
                    engine.processes.execute(pid, NEXT_COMMAND[activities[pid]])
                    activities[pid] = OTHER[activities[pid]]
                else:
                    engine.processes.get(pid)
            except Exception as error:
                failed = f"{type(error).__name__}: {error}"
            ended = time.perf_counter()
            if measure_from <= started and ended <= measure_to:
                if failed is None:
                    requests += 1
                    local.append(ended - started)
                else:
                    errors += 1
                    if not first_error:
                        first_error.append(failed)
        with lock:
            latencies.extend(local)
            counts["requests"] += requests
            counts["errors"] += errors

    threads = [threading.Thread(target=one_client, args=(o,)) for o in owned]
    for thread in threads:
        thread.start()
    begin = time.perf_counter()
    window[:] = [begin + config.warmup, begin + config.warmup + config.duration]
    barrier.wait()
    time.sleep(max(0.0, window[0] - time.perf_counter()))
    cpu0 = own_cpu()
    time.sleep(max(0.0, window[1] - time.perf_counter()))
    cpu1 = own_cpu()
    for thread in threads:
        thread.join()
    return LoadResult(
        counts["requests"],
        counts["errors"],
        latencies,
        cpu1 - cpu0,
        activities,
        first_error[0] if first_error else None,
    )


def summarise(
    operation: str,
    via: str,
    results: list[LoadResult],
    seconds: float,
    cpu: tuple[float | None, float | None, int | None],
) -> Measured:
    latencies = sorted(x for r in results for x in r.latencies)
    return Measured(
        operation=operation,
        via=via,
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        seconds=seconds,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p95_ms=percentile(latencies, 0.95) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=(latencies[-1] if latencies else 0.0) * 1000,
        client_cpu=sum(r.cpu_seconds for r in results) / seconds,
        server_cpu=cpu[0],
        machine_cpu=cpu[1],
        sessions_opened=cpu[2],
    )


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def flowkeeper(*args: str) -> str:
    """Run the ``flowkeeper`` command line; its standard output."""
    done = subprocess.run(
        [*FLOWKEEPER, *args], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"flowkeeper {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def server_command(config: Config, port: int) -> list[str]:
    if config.server == "serve":
        return [
            *FLOWKEEPER, "serve", "--database", config.database, "--host", "127.0.0.1",
            "--port", str(port), "--log-level", config.log_level,
            "--processes", str(config.server_processes), *config.serve_options(),
            *([] if config.with_workers else ["--no-workers"]),
        ]  # fmt: skip
    if config.server == "profiled":
        return [
            sys.executable, str(Path(__file__).resolve()), "_serve", "--database", config.database,
            "--port", str(port), "--log-level", config.log_level, *config.serve_options(),
        ]  # fmt: skip
    raise ValueError(f"--server is serve or profiled, not {config.server!r}")


@contextlib.contextmanager
def running_server(config: Config, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The server as a subprocess on a free port, until the block ends; its URL and process."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            server_command(config, port), stdout=output, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            yield base, process
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def create_processes(base: str, key: str, count: int, concurrency: int) -> list[str]:
    """Upload the ping-pong scheme and create ``count`` processes through the API."""

    async def create() -> list[str]:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            saved = await client.post("/api/v1/schemes", json=PING_PONG)
            if saved.status_code != 201:
                raise RuntimeError(f"uploading the scheme failed: {saved.text}")
            made: list[str] = []
            semaphore = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with semaphore:
                    response = await client.post("/api/v1/processes", json={"scheme": SCHEME})
                    if response.status_code != 201:
                        raise RuntimeError(f"creating a process failed: {response.text}")
                    made.append(response.json()["id"])

            await asyncio.gather(*(one() for _ in range(count)))
            return sorted(made)

    return asyncio.run(create())


# -- a run -------------------------------------------------------------------------------------


def run(config: Config, progress: Callable[[str], None] | None = None) -> Report:
    """Start the server, make the processes, time every operation beside its ceiling."""
    import flowkeeper as fk

    say = progress or (lambda _text: None)
    if config.clients < 1 or config.processes < config.clients:
        raise ValueError("need at least one client and at least as many processes as clients")
    flowkeeper("migrate", "--database", config.database)
    key_args = ["--role", "admin", "--tenant", TENANT, "--description", "benchmarks/http_load.py"]
    made = json.loads(
        flowkeeper("keys", "create", *key_args, "--database", config.database, "--json")
    )
    report = Report(config=asdict(config) | {"cpus": os.cpu_count()})
    engine = config.serve_settings().engine()
    ids: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="fk-http-load-") as directory:
            log = Path(config.server_log or Path(directory) / "server.log")
            with running_server(config, log) as (base, server):
                say(f"server on {base} ({config.server}); creating {config.processes} processes")
                ids = create_processes(base, made["key"], config.processes, config.clients)
                activities = dict.fromkeys(ids, "A")
                where = (base, made["key"], server.pid)
                for operation in config.operations:
                    found = measure(config, engine, operation, activities, where, say)
                    report.results.extend(found)
    finally:
        for pid in ids:
            with contextlib.suppress(fk.FlowkeeperError):
                engine.processes.delete(pid)
        with contextlib.suppress(fk.FlowkeeperError):
            from flowkeeper.api.keys import KeyStore

            KeyStore(engine).revoke(made["id"])
        engine.close()
    return report


def measure(
    config: Config,
    engine: Any,
    operation: str,
    activities: dict[str, str],
    server: tuple[str, str, int],
    say: Callable[[str], None],
) -> list[Measured]:
    """One operation over HTTP, then through the Python API (unless ``ceiling`` is off).

    ``activities``: where each process is (A or B), kept up to date; ``server``: its URL, the
    key, its process id.
    """
    base, key, server_pid = server
    ids = sorted(activities)
    window = CpuWindow(server_pid, engine)
    say(f"{operation}: HTTP, {config.clients} clients, {config.duration:g} s")
    settle(engine)
    window.start()
    loads = http_phase(config, base, key, operation, ids, activities)
    http = summarise(operation, "http", loads, config.duration, window.stop())
    for load in loads:
        activities.update(load.activities)
    if http.errors:
        say(f"  {http.errors} errors, the first: {next(x.first_error for x in loads if x.errors)}")
    if not config.ceiling:
        return [http]
    say(f"{operation}: Python API, {config.clients} threads")
    settle(engine)
    window.start()
    load = python_phase(config, engine, operation, ids, activities)
    python = summarise(operation, "python", [load], config.duration, window.stop())
    if python.errors:
        say(f"  {python.errors} errors, the first: {load.first_error}")
    http.ceiling_rate = python.rate
    return [http, python]


def settle(engine: Any) -> None:
    """Vacuum the process tables (PostgreSQL) so that each timed phase starts alike: otherwise
    the phase after a write-heavy one shares the cores with the autovacuum that follows it."""
    if engine.kind != "postgresql":
        return
    with engine.database.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("fk_processes", "fk_process_history"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")


def table(report: Report) -> str:
    """The report for humans."""
    lines = [
        f"{'operation':<8} {'via':<6} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'errors':>6} {'ratio':>5} {'client':>6} {'server':>6} {'ms/req':>6} "
        f"{'machine':>7} {'sessions':>8}"
    ]

    def show(value: float | None, digits: int = 2) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for r in report.results:
        lines.append(
            f"{r.operation:<8} {r.via:<6} {r.rate:>7,.0f} {r.p50_ms:>7.1f} {r.p95_ms:>7.1f} "
            f"{r.p99_ms:>7.1f} {r.max_ms:>7.1f} {r.errors:>6} {show(r.ratio):>5} "
            f"{r.client_cpu:>6.2f} {show(r.server_cpu):>6} {show(r.server_ms_per_request):>6} "
            f"{show(r.machine_cpu):>7} {'' if r.sessions_opened is None else r.sessions_opened:>8}"
        )
    lines.append(
        "ratio: HTTP ÷ the Python API (the ceiling) in the same run. client, server, machine: "
        "cores busy on average (the load generator or, for the ceiling, this process; the "
        "server's processes; the whole machine). ms/req: the server's CPU per request. sessions: "
        "database sessions opened meanwhile (PostgreSQL)."
    )
    return "\n".join(lines)


# -- this script's own server launch (--server profiled) ---------------------------------------


class ThreadProfiles:
    """cProfile in every thread of the process (the event loop's and the route threads')."""

    def __init__(self) -> None:
        import cProfile

        # CPU time of each thread, not wall time: a thread waiting for the database or for
        # work costs nothing here.
        self.make = lambda: cProfile.Profile(time.thread_time)
        self.profiles: list[Any] = []
        self.lock = threading.Lock()

    def _in_new_thread(self, *_args: Any) -> None:
        sys.setprofile(None)
        profile = self.make()
        with self.lock:
            self.profiles.append(profile)
        profile.enable()

    def start(self) -> None:
        threading.setprofile(self._in_new_thread)
        main = self.make()
        self.profiles.append(main)
        main.enable()

    def dump(self, path: str) -> None:
        import pstats

        threading.setprofile(None)  # type: ignore[arg-type]
        self.profiles[0].disable()
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        stats.dump_stats(path)


def serve_main(argv: Sequence[str]) -> None:
    """``http_load.py _serve``: one API process as ``flowkeeper serve`` builds it, profiled
    if ``FK_HTTP_BENCH_PROFILE`` names a file."""
    import uvicorn

    from flowkeeper.api import DEFAULT_THREADS
    from flowkeeper.cli.serve import ServeSettings

    parser = argparse.ArgumentParser(prog="http_load.py _serve")
    parser.add_argument("--database", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--http", default="auto")
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--pool-size", type=int)
    parser.add_argument("--max-overflow", type=int)
    parser.add_argument("--pre-ping", action="store_true")
    args = parser.parse_args(argv)
    settings = ServeSettings(
        database=args.database,
        threads=args.threads,
        pool_size=args.pool_size,
        max_overflow=args.max_overflow,
        pre_ping=args.pre_ping,
    )
    profile_path = os.environ.get(PROFILE_VARIABLE)
    profiles = ThreadProfiles() if profile_path else None
    engine = settings.engine()
    if profiles is not None:
        profiles.start()
    server = uvicorn.Server(
        uvicorn.Config(
            settings.app(engine),
            host="127.0.0.1",
            port=args.port,
            log_level=args.log_level,
            http=args.http,
            loop=args.loop,
        )
    )

    def stop(signum: int, frame: Any) -> None:
        # uvicorn raises the signal that stopped it again once it is done: without this
        # handler that would end the process before the profile is written.
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        server.run()
    finally:
        if profiles is not None and profile_path:
            profiles.dump(profile_path)
        engine.close()


# -- the command line --------------------------------------------------------------------------


def parse_config(argv: Sequence[str]) -> tuple[Config, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="Database URL.")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds timed per phase.")
    parser.add_argument("--warmup", type=float, default=1.0, help="Seconds before timing.")
    parser.add_argument("--clients", type=int, default=16, help="Concurrent clients.")
    parser.add_argument("--processes", type=int, default=256, help="Processes to create.")
    parser.add_argument(
        "--operations", default=",".join(OPERATIONS), help="command,get (either or both)."
    )
    parser.add_argument("--no-ceiling", action="store_true", help="Skip the Python API.")
    parser.add_argument(
        "--client-processes", type=int, default=1, help="Processes the clients run in."
    )
    parser.add_argument(
        "--client", choices=("httpx", "raw"), default="httpx", help="The load generator."
    )
    parser.add_argument("--server", choices=("serve", "profiled"), default="serve")
    parser.add_argument("--log-level", default="warning", help="The server's log level.")
    parser.add_argument("--with-workers", action="store_true", help="serve: run step workers.")
    parser.add_argument("--http", default="auto", help="auto, h11 or httptools.")
    parser.add_argument("--loop", default="auto", help="auto, asyncio or uvloop.")
    parser.add_argument("--server-processes", type=int, default=1, help="serve --processes.")
    parser.add_argument("--threads", type=int, default=0, help="serve --threads.")
    parser.add_argument("--pool-size", type=int, default=0, help="serve (and the ceiling).")
    parser.add_argument("--max-overflow", type=int, default=-1, help="serve (and the ceiling).")
    parser.add_argument("--pre-ping", action="store_true", help="serve (and the ceiling).")
    parser.add_argument("--server-log", help="Keep the server's output in this file.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args(argv)
    operations = [o.strip() for o in args.operations.split(",") if o.strip()]
    if not operations or set(operations) - set(OPERATIONS):
        parser.error(f"--operations takes {', '.join(OPERATIONS)}")
    config = Config(
        database=args.database,
        duration=args.duration,
        warmup=args.warmup,
        clients=args.clients,
        processes=args.processes,
        operations=operations,
        ceiling=not args.no_ceiling,
        client_processes=args.client_processes,
        client=args.client,
        server=args.server,
        log_level=args.log_level,
        with_workers=args.with_workers,
        http=args.http,
        loop=args.loop,
        server_processes=args.server_processes,
        threads=args.threads,
        pool_size=args.pool_size,
        max_overflow=args.max_overflow,
        pre_ping=args.pre_ping,
        server_log=args.server_log,
    )
    return config, args.json


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_serve"]:
        serve_main(argv[1:])
        return
    config, as_json = parse_config(argv)
    report = run(config, progress=None if as_json else print)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(table(report))


if __name__ == "__main__":
    main()
