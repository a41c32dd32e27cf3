"""The benchmark workloads, each timed beside its bare-SQL ceiling in the same run.

They run against a database of their own: every workload empties Flowkeeper's step tables
first, and refuses to when it finds steps that a benchmark did not add.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

import flowkeeper as fk
from flowkeeper.bench.ceiling import bare_insert, bare_loop
from flowkeeper.errors import InvalidArgument
from flowkeeper.storage.tables import QUEUES

PREFIX = "bench/"
Progress = Callable[[int, int], None]


@dataclass
class Result:
    """One workload's figures: the engine's rate, the ceiling's, and their ratio."""

    workload: str
    database: str
    durability: str
    steps: int
    seconds: float
    rate: float
    ceiling_rate: float | None = None
    workers: int = 0
    processes: int = 1
    batch_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return None if not self.ceiling_rate else self.rate / self.ceiling_rate

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def _finish(
    engine: fk.Engine,
    workload: str,
    steps: int,
    seconds: float,
    ceiling: float | None,
    workers: int,
    batch_size: int,
    processes: int = 1,
    **extra: Any,
) -> Result:
    """The workload's result, with the database's durability settings; closes the engine."""
    result = Result(
        workload,
        engine.kind,
        durability(engine),
        steps,
        seconds,
        steps / seconds,
        ceiling,
        workers,
        processes,
        batch_size,
        extra,
    )
    engine.close()
    return result


def durability(engine: fk.Engine) -> str:
    """The settings that decide what a commit costs, as the database reports them."""
    with engine.database.connect() as connection:
        if engine.kind == "postgresql":
            value = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
            fsync = connection.exec_driver_sql("SHOW fsync").scalar()
            return f"synchronous_commit={value}, fsync={fsync}"
        if engine.kind == "sqlite":
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = connection.exec_driver_sql("PRAGMA synchronous").scalar()
            names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            return f"journal_mode={mode}, synchronous={names.get(int(sync or 0), sync)}"
        flush = connection.exec_driver_sql(
            "SELECT @@innodb_flush_log_at_trx_commit, @@sync_binlog"
        ).one()
        return f"innodb_flush_log_at_trx_commit={flush[0]}, sync_binlog={flush[1]}"


def fresh_engine(url: str, **options: Any) -> fk.Engine:
    """A migrated engine on ``url`` with empty step tables (refusing to empty real work)."""
    engine = fk.Engine(url, **options)
    engine.migrate()
    with engine.database.begin() as connection:
        for table in QUEUES.values():
            foreign = connection.execute(
                sa.select(table.c.id).where(~table.c.name.startswith(PREFIX)).limit(1)
            ).first()
            if foreign is not None:
                raise InvalidArgument(
                    f"{table.name} holds steps that no benchmark added; run the benchmark on a "
                    "database of its own (it empties the step tables)"
                )
    _empty(engine)
    return engine


def _empty(engine: fk.Engine) -> None:
    """Empty the step tables; on PostgreSQL by TRUNCATE, which leaves no dead rows behind.

    A DELETE leaves the last run's rows dead in the ready queue's indexes until vacuum, and
    every claim of the next run would first step over them.
    """
    with engine.database.begin() as connection:
        if engine.kind == "postgresql":
            connection.exec_driver_sql(f"TRUNCATE {', '.join(t.name for t in QUEUES.values())}")
        else:
            for table in QUEUES.values():
                connection.execute(table.delete())


def _settle(engine: fk.Engine) -> None:
    """After seeding, before timing: on PostgreSQL, VACUUM ANALYZE the step tables.

    The timed run then starts from the same state for the engine and its ceiling, with the
    planner's statistics current, and autovacuum does not pick that moment to start.
    """
    if engine.kind != "postgresql":
        return
    with engine.database.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for table in QUEUES.values():
            c.exec_driver_sql(f"VACUUM ANALYZE {table.name}")


def _noop(step: fk.StepContext) -> None:
    return None


def register_bench_steps(engine: fk.Engine) -> None:
    """The implementations every workload uses (also in worker processes)."""

    def chain(step: fk.StepContext) -> fk.Outcome:
        left = step.state["left"]
        if left <= 1:
            return step.done()
        return step.done(fk.Step(f"{PREFIX}chain", {"left": left - 1}))

    def fan_out(step: fk.StepContext) -> fk.Outcome:
        width = step.state["width"]
        children = [fk.Step(f"{PREFIX}noop", {"i": i}) for i in range(width)]
        join = fk.Step(f"{PREFIX}join", {"width": width})
        return step.done(*children, join)

    def join(step: fk.StepContext) -> fk.Outcome:
        waiting = step_engine.count(fk.Search(flow_id=step.flow_id, name=f"{PREFIX}noop"))
        if waiting["ready"]:
            return step.rerun(run_at=datetime.now(UTC) + timedelta(milliseconds=20))
        return step.done()

    step_engine = engine
    engine.register_step([f"{PREFIX}noop"], _noop)
    engine.register_step([f"{PREFIX}chain"], chain)
    engine.register_step([f"{PREFIX}fanout"], fan_out)
    engine.register_step([f"{PREFIX}join"], join)


def _add_noops(engine: fk.Engine, n: int, batch: int = 1000) -> None:
    for start in range(0, n, batch):
        engine.add_steps(*[fk.Step(f"{PREFIX}noop") for _ in range(min(batch, n - start))])


def _watch(engine: fk.Engine, total: int, progress: Progress | None) -> Callable[[], None]:
    """Report progress from the running pool's counters every 0.2 s; returns a stopper."""
    if progress is None:
        return lambda: None
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            progress(min(engine.stats.executed, total), total)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join()
        progress(total, total)

    return stopper


def _run_timed(
    engine: fk.Engine,
    workers: int,
    batch: int,
    total: int,
    progress: Progress | None,
    waiting: Callable[[], bool] = lambda: False,
) -> float:
    """Seconds for ``workers`` to run everything due, and again while ``waiting()`` says so."""
    stop_watch = _watch(engine, total, progress)
    started = time.perf_counter()
    while True:
        engine.run(workers=workers, until_idle=True, batch_size=batch, handle_signals=False)
        if not waiting():
            break
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop_watch()
    return elapsed


def drain(
    url: str,
    n: int = 20_000,
    workers: int = 8,
    batch_size: int = 100,
    processes: int = 1,
    progress: Progress | None = None,
) -> Result:
    """``n`` no-op steps added in bulk, then drained by ``workers`` (in ``processes``)."""
    engine = fresh_engine(url)
    register_bench_steps(engine)
    _add_noops(engine, n)
    _settle(engine)
    if processes > 1:
        seconds = _drain_in_processes(url, workers, batch_size, processes)
    else:
        seconds = _run_timed(engine, workers, batch_size, n, progress)
    executed = engine.count(fk.Search(name=f"{PREFIX}noop"))["done"]
    ceiling = _ceiling(engine, n, workers * processes, batch_size)
    return _finish(
        engine, "drain", executed, seconds, ceiling, workers, batch_size, processes=processes
    )


def _ceiling(
    engine: fk.Engine,
    n: int,
    workers: int,
    batch_size: int,
    seed: Callable[[fk.Engine], None] | None = None,
    spawn: Callable[[dict[str, Any]], str | None] | None = None,
    expected: int | None = None,
    first_claim: int | None = None,
) -> float:
    """Rows per second the bare loop moves through the same tables, same workers and batch."""
    _empty(engine)
    if seed is None:
        _add_noops(engine, n)
    else:
        seed(engine)
    _settle(engine)
    moved = expected or n
    seconds = bare_loop(engine.database, workers, batch_size, moved, spawn, first_claim=first_claim)
    return moved / seconds


READY = "ready"
"""What a benchmark worker process prints once it can start (:mod:`flowkeeper.bench.process`)."""


def _drain_in_processes(url: str, workers: int, batch_size: int, processes: int) -> float:
    """Seconds from the first process's start to the last one's end, all started at once."""
    command = [sys.executable, "-m", "flowkeeper.bench.process", url, str(workers), str(batch_size)]
    children = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != READY:
                raise RuntimeError("a benchmark worker process failed to start")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        spans = []
        for child in children:
            out, _ = child.communicate(timeout=900)
            if child.returncode != 0:
                raise RuntimeError(f"benchmark worker process failed with {child.returncode}")
            spans.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return float(max(s["end"] for s in spans)) - float(min(s["start"] for s in spans))


def chain(
    url: str,
    flows: int = 200,
    length: int = 50,
    workers: int = 8,
    batch_size: int = 100,
    progress: Progress | None = None,
) -> Result:
    """``flows`` chains of ``length`` steps; each step adds the next as it completes."""
    engine = fresh_engine(url)
    register_bench_steps(engine)
    total = flows * length
    engine.add_steps(*[fk.Step(f"{PREFIX}chain", {"left": length}) for _ in range(flows)])
    _settle(engine)
    seconds = _run_timed(engine, workers, batch_size, total, progress)
    executed = engine.count(fk.Search(name=f"{PREFIX}chain"))["done"]

    def seed(e: fk.Engine) -> None:
        e.add_steps(*[fk.Step(f"{PREFIX}chain", {"left": length}) for _ in range(flows)])

    def spawn(row: dict[str, Any]) -> str | None:
        left = json.loads(row["state"])["left"]
        return None if left <= 1 else json.dumps({"left": left - 1})

    share = -(-flows // workers)  # every thread of the bare loop carries some of the flows
    ceiling = _ceiling(engine, total, workers, batch_size, seed, spawn, total, share)
    return _finish(
        engine, "chain", executed, seconds, ceiling, workers, batch_size, flows=flows, length=length
    )


def fanout(
    url: str,
    width: int = 10_000,
    workers: int = 8,
    batch_size: int = 100,
    progress: Progress | None = None,
) -> Result:
    """One step adds ``width`` steps and a join that completes once all of them are done."""
    engine = fresh_engine(url)
    register_bench_steps(engine)
    engine.add_step(fk.Step(f"{PREFIX}fanout", {"width": width}))
    _settle(engine)
    # until_idle returns when nothing is due now: a join waiting a few ms is not finished.
    join = fk.Search(name=f"{PREFIX}join")
    seconds = _run_timed(
        engine, workers, batch_size, width + 2, progress, lambda: engine.count(join)["ready"] > 0
    )
    counts = engine.count()
    if counts["ready"] or counts["failed"]:
        raise RuntimeError(f"fan-out did not finish cleanly: {counts}")
    steps = counts["done"]
    ceiling = _ceiling(engine, width, workers, batch_size)
    return _finish(engine, "fanout", steps, seconds, ceiling, workers, batch_size, width=width)


def add(
    url: str, n: int = 50_000, batch_size: int = 1000, progress: Progress | None = None
) -> Result:
    """Bulk insert: ``add_steps`` in batches of ``batch_size``, one transaction each."""
    engine = fresh_engine(url)
    started = time.perf_counter()
    for start in range(0, n, batch_size):
        engine.add_steps(*[fk.Step(f"{PREFIX}noop") for _ in range(min(batch_size, n - start))])
        if progress is not None:
            progress(min(start + batch_size, n), n)
    seconds = time.perf_counter() - started
    _empty(engine)
    ceiling_seconds = bare_insert(engine.database, n, batch_size)
    return _finish(engine, "add", n, seconds, n / ceiling_seconds, 0, batch_size)


def latency(
    url: str,
    rate: float = 500.0,
    seconds: float = 10.0,
    workers: int = 8,
    progress: Progress | None = None,
) -> Result:
    """Steps added one at a time at ``rate`` per second by another process, as an application
    would add them; time from the add to the start of the step's execution."""
    engine = fresh_engine(url)
    register_bench_steps(engine)
    total = int(rate * seconds)
    runner = threading.Thread(
        target=engine.run, kwargs={"workers": workers, "handle_signals": False}, daemon=True
    )
    runner.start()
    time.sleep(0.5)  # let the pool start and its LISTEN connection open
    producer = subprocess.Popen(
        [sys.executable, "-m", "flowkeeper.bench.producer", url, str(rate), str(total)]
    )
    while producer.poll() is None:
        if progress is not None:
            progress(engine.stats.executed, total)
        time.sleep(0.2)
    if producer.returncode != 0:
        engine.stop()
        raise RuntimeError(f"the benchmark's producer process failed with {producer.returncode}")
    deadline = time.perf_counter() + 60
    while engine.count()["done"] < total and time.perf_counter() < deadline:
        time.sleep(0.05)
    engine.stop()
    runner.join()
    if progress is not None:
        progress(total, total)
    rows = engine.search(queues=["done"], limit=None)["done"]
    delays = sorted(
        (r.execution_started_at - r.created_at).total_seconds() * 1000
        for r in rows
        if r.execution_started_at is not None
    )
    quantiles = statistics.quantiles(delays, n=100) if len(delays) > 1 else delays * 99
    return _finish(
        engine,
        "latency",
        len(rows),
        seconds,
        None,
        workers,
        0,
        target_rate=rate,
        p50_ms=round(quantiles[49], 2),
        p95_ms=round(quantiles[94], 2),
        p99_ms=round(quantiles[98], 2),
        max_ms=round(delays[-1], 2) if delays else None,
    )


def rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    with open(f"/proc/{os.getpid()}/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
