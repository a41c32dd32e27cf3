"""The ``processes`` workload: business-process commands beside a bare loop making the same writes.

On a database of its own it saves a ping-pong scheme (activities A and B, commands Go: A → B
and Back: B → A, an action on both that counts into the persistent parameter ``Counter``),
creates processes with concurrent client threads, then executes commands with the same
threads, each on its own processes so that no two calls ever wait for the same row.

In the same run, the baseline makes the same writes per operation without the engine: one
transaction that reads the process row (``FOR UPDATE`` except on SQLite, whose ``BEGIN
IMMEDIATE`` serialises writers), updates it (activity, state, parameters, row version) and
appends a history row, with statements built from SQLAlchemy Core, compiled once and run on
a driver connection each thread holds. That is what the database and a careful Python loop
cost; ``rate / ceiling_rate`` is what the engine adds.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

import flowkeeper as fk
from flowkeeper.bench.ceiling import _driver_connection
from flowkeeper.bench.workloads import PREFIX, Progress, Result, _finish, fresh_engine
from flowkeeper.errors import InvalidArgument
from flowkeeper.processes.context import ActionContext
from flowkeeper.processes.model import (
    ActionRef,
    Activity,
    Command,
    Parameter,
    ParameterPurpose,
    Scheme,
    Transition,
    Trigger,
    TriggerType,
)
from flowkeeper.storage.database import kind_of
from flowkeeper.storage.driver import DriverStatement, observing_driver_cursors
from flowkeeper.storage.tables import process_history, schemes
from flowkeeper.storage.tables import processes as process_table

SCHEME = f"{PREFIX}ping-pong"
COUNT_ACTION = f"{PREFIX}count"
MOVES = {"A": ("B", "Go", "A_B"), "B": ("A", "Back", "B_A")}
"""From each activity: where the next command goes, the command, and its transition."""


def ping_pong_scheme() -> Scheme:
    """A (initial) ⇄ B by the commands Go and Back; entering either adds 1 to ``Counter``."""
    count = (ActionRef(COUNT_ACTION),)
    return Scheme(
        SCHEME,
        activities=(
            Activity("A", state="A", is_initial=True, implementation=count),
            Activity("B", state="B", implementation=count),
        ),
        transitions=(
            Transition("A_B", "A", "B", Trigger(TriggerType.COMMAND, "Go")),
            Transition("B_A", "B", "A", Trigger(TriggerType.COMMAND, "Back")),
        ),
        commands=(Command("Go"), Command("Back")),
        parameters=(
            Parameter("Counter", "Int32", ParameterPurpose.PERSISTENCE, initial_value="0"),
        ),
    )


def _count(ctx: ActionContext, _parameter: Any) -> None:
    ctx.process.parameters["Counter"] = ctx.process.parameters["Counter"] + 1


def processes(
    url: str,
    n: int = 20_000,
    clients: int = 8,
    instances: int = 1000,
    progress: Progress | None = None,
) -> Result:
    """``instances`` processes created, then ``n`` commands executed, by ``clients`` threads.

    ``rate`` is executes per second, ``ceiling_rate`` the baseline's operations per second;
    ``extra`` holds creates per second and the p50/p99 latency of one execute (and of one
    baseline operation), and what one execute cost in statements and pool checkouts.
    """
    if clients < 1 or instances < clients or n < 1:
        raise InvalidArgument(
            f"the processes workload needs at least one client, one execute, and a process "
            f"per client (got clients={clients}, n={n}, instances={instances})"
        )
    engine = fresh_engine(url)
    _empty_process_tables(engine)
    engine.action(COUNT_ACTION)(_count)
    engine.schemes.save(ping_pong_scheme())
    meter = _Meter(progress, instances + 2 * n, clients)
    owned: list[list[str]] = [[] for _ in range(clients)]

    def create(index: int, ready: threading.Barrier) -> list[float]:
        ready.wait()
        identity = f"{PREFIX}client-{index}"
        for _ in range(index, instances, clients):
            owned[index].append(engine.processes.create(SCHEME, identity=identity))
            meter.add(index)
        return []

    with meter:
        create_seconds, _ = _in_threads(clients, create)
        create_moves = _history_rows(engine)
        quotas = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]

        def execute(index: int, ready: threading.Barrier) -> list[float]:
            mine, identity = owned[index], f"{PREFIX}client-{index}"
            made = [0] * len(mine)
            latencies = []
            ready.wait()
            for k in range(quotas[index]):
                j = k % len(mine)
                command = "Go" if made[j] % 2 == 0 else "Back"
                started = time.perf_counter()
                result = engine.processes.execute(mine[j], command, identity=identity)
                latencies.append(time.perf_counter() - started)
                if not result.executed:
                    raise RuntimeError(f"{command} did not move process {mine[j]}")
                made[j] += 1
                meter.add(index)
            return latencies

        seconds, latencies = _in_threads(clients, execute)
        moves = _moves(owned, quotas)
        _check(engine, moves, create_moves + n)
        baseline = _Baseline(engine.database, kind_of(engine.url))

        def bare(index: int, ready: threading.Barrier) -> list[float]:
            mine, identity = owned[index], f"{PREFIX}baseline-{index}"
            with baseline.connect() as operate:
                latencies = []
                ready.wait()
                for k in range(quotas[index]):
                    started = time.perf_counter()
                    operate(mine[k % len(mine)], identity)
                    latencies.append(time.perf_counter() - started)
                    meter.add(index)
            return latencies

        baseline_seconds, baseline_latencies = _in_threads(clients, bare)
    _check(engine, {pid: 2 * count for pid, count in moves.items()}, create_moves + 2 * n)
    extra: dict[str, Any] = _costs(engine)
    p50, p99 = _percentiles(latencies)
    base_p50, base_p99 = _percentiles(baseline_latencies)
    return _finish(
        engine,
        "processes",
        n,
        seconds,
        n / baseline_seconds,
        clients,
        0,
        instances=instances,
        creates_per_s=round(instances / create_seconds, 1),
        p50_ms=p50,
        p99_ms=p99,
        baseline_p50_ms=base_p50,
        baseline_p99_ms=base_p99,
        history_rows=create_moves + n,
        **extra,
    )


def _empty_process_tables(engine: fk.Engine) -> None:
    """Delete the bench's processes and schemes, refusing when others are there."""
    with engine.database.begin() as connection:
        for column in (process_table.c.scheme_code, schemes.c.code):
            foreign = connection.execute(
                sa.select(column).where(~column.startswith(PREFIX)).limit(1)
            ).first()
            if foreign is not None:
                raise InvalidArgument(
                    f"{column.table.name} holds {foreign[0]!r}, which no benchmark added; run "
                    "the benchmark on a database of its own (it empties the process tables)"
                )
        for table in (process_history, process_table, schemes):
            connection.execute(table.delete())


def _history_rows(engine: fk.Engine) -> int:
    with engine.database.connect() as connection:
        return int(
            connection.execute(sa.select(sa.func.count()).select_from(process_history)).scalar()
            or 0
        )


def _moves(owned: list[list[str]], quotas: list[int]) -> dict[str, int]:
    """How many commands each process gets when each client takes its own in turn."""
    moves: dict[str, int] = {}
    for mine, quota in zip(owned, quotas, strict=True):
        for j, pid in enumerate(mine):
            moves[pid] = quota // len(mine) + (1 if j < quota % len(mine) else 0)
    return moves


def _check(engine: fk.Engine, expected: dict[str, int], expected_history: int) -> None:
    """Every process rests where its number of moves says, and counted every one of them."""
    p = process_table.c
    with engine.database.connect() as connection:
        rows = connection.execute(
            sa.select(p.id, p.activity, p.parameters, p.row_version).where(p.scheme_code == SCHEME)
        ).all()
    if len(rows) != len(expected):
        raise RuntimeError(f"{len(rows)} bench processes stored, {len(expected)} created")
    for pid, activity, parameters, row_version in rows:
        moves = expected[pid]
        counter = json.loads(parameters)["Counter"]
        if activity != "AB"[moves % 2] or counter != moves + 1 or row_version != moves + 1:
            raise RuntimeError(
                f"process {pid} rests on {activity} with Counter={counter} and row version "
                f"{row_version} after {moves} moves"
            )
    history = _history_rows(engine)
    if history != expected_history:
        raise RuntimeError(f"{history} history rows written, {expected_history} expected")


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    """The p50 and p99 of ``seconds``, in milliseconds."""
    cuts = statistics.quantiles(seconds, n=100) if len(seconds) > 1 else seconds * 99
    return round(cuts[49] * 1000, 2), round(cuts[98] * 1000, 2)


Work = Callable[[int, threading.Barrier], list[float]]


def _in_threads(clients: int, work: Work) -> tuple[float, list[float]]:
    """Run ``work(index, ready)`` in ``clients`` threads; each waits on ``ready`` once set up.

    Returns the seconds from the moment all were ready until the last one finished, and the
    latencies they returned. A failure in any thread stops the others at their next wait and
    is raised here.
    """
    ready = threading.Barrier(clients + 1)
    failures: list[BaseException] = []
    results: list[list[float]] = [[] for _ in range(clients)]

    def run(index: int) -> None:
        try:
            results[index] = work(index, ready)
        except threading.BrokenBarrierError:
            pass
        except BaseException as error:
            failures.append(error)
            ready.abort()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    with suppress(threading.BrokenBarrierError):
        ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return elapsed, [value for result in results for value in result]


class _Meter:
    """Counts finished operations per thread and reports them to ``progress`` every 0.2 s."""

    def __init__(self, progress: Progress | None, total: int, clients: int) -> None:
        self._progress = progress
        self._total = total
        self._counts = [0] * clients
        self._stop = threading.Event()

    def add(self, index: int) -> None:
        self._counts[index] += 1  # one writer per slot: the thread of that index

    def __enter__(self) -> _Meter:
        if self._progress is not None:
            threading.Thread(target=self._watch, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._progress is not None:
            self._progress(self._total, self._total)

    def _watch(self) -> None:
        assert self._progress is not None
        while not self._stop.wait(0.2):
            self._progress(min(sum(self._counts), self._total), self._total)


Operate = Callable[[str, str], None]


class _Baseline:
    """The engine's writes for one command, and nothing else, on a held driver connection."""

    def __init__(self, database: sa.Engine, kind: str) -> None:
        self._database = database
        self._kind = kind
        dialect = database.dialect
        p = process_table.c
        select = sa.select(process_table).where(p.id == sa.bindparam("pid"))
        if kind != "sqlite":
            select = select.with_for_update()
        changed = (
            "scheme_version",
            "activity",
            "state",
            "status",
            "parameters",
            "updated_at",
            "row_version",
            "history_length",
        )
        update = (
            process_table.update()
            .where(p.id == sa.bindparam("pid"), p.row_version == sa.bindparam("expected"))
            .values({name: sa.bindparam(f"new_{name}") for name in changed})
        )
        insert = process_history.insert()
        self._select = DriverStatement(select, dialect)
        self._update = DriverStatement(update, dialect)
        self._insert = DriverStatement(
            insert, dialect, column_keys=[c.name for c in process_history.columns]
        )
        self._columns = {c.name: i for i, c in enumerate(process_table.columns)}
        time_type = process_history.c.at.type.dialect_impl(dialect)
        self._time: Callable[[Any], Any] = time_type.bind_processor(dialect) or _unchanged

    @contextmanager
    def connect(self) -> Iterator[Operate]:
        """A function moving one process to its other activity in one transaction."""
        connection = _driver_connection(self._database)
        cursor = connection.cursor()
        columns = self._columns
        sqlite = self._kind == "sqlite"

        def operate(pid: str, identity: str) -> None:
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            try:
                self._select.execute(cursor, {"pid": pid})
                row = cursor.fetchone()
                activity, state = row[columns["activity"]], row[columns["state"]]
                target, command, transition = MOVES[activity]
                parameters = json.loads(row[columns["parameters"]])
                parameters["Counter"] += 1
                version, length = row[columns["row_version"]], row[columns["history_length"]]
                now = self._time(datetime.now(UTC))
                self._update.execute(
                    cursor,
                    {
                        "pid": pid,
                        "expected": version,
                        "new_scheme_version": row[columns["scheme_version"]],
                        "new_activity": target,
                        "new_state": target,
                        "new_status": "Idled",
                        "new_parameters": json.dumps(
                            parameters, separators=(",", ":"), ensure_ascii=False
                        ),
                        "new_updated_at": now,
                        "new_row_version": version + 1,
                        "new_history_length": length + 1,
                    },
                )
                if cursor.rowcount != 1:
                    raise RuntimeError(f"baseline lost the row version check on {pid}")
                self._insert.execute(
                    cursor,
                    {
                        "process_id": pid,
                        "seq": length + 1,
                        "transition": transition,
                        "from_activity": activity,
                        "to_activity": target,
                        "from_state": state,
                        "to_state": target,
                        "command": command,
                        "trigger": "Command",
                        "classifier": "NotSpecified",
                        "identity": identity,
                        "at": now,
                    },
                )
            except BaseException:
                if sqlite:
                    cursor.execute("ROLLBACK")
                else:
                    connection.rollback()
                raise
            if sqlite:
                cursor.execute("COMMIT")
            else:
                connection.commit()

        try:
            yield operate
        finally:
            cursor.close()
            connection.close()


def _unchanged(value: Any) -> Any:
    return value


def _costs(engine: fk.Engine) -> dict[str, float]:
    """What one execute costs, counted on a probe process after the timed runs: statements
    (through SQLAlchemy or on the driver's cursor; BEGIN and COMMIT apart), commits, and
    pool checkouts (each a ping round trip where ``pool_pre_ping`` is on)."""
    counts = dict.fromkeys(("statements", "commits", "checkouts"), 0)

    def counter(name: str) -> Callable[..., None]:
        def count(*_args: Any, **_kwargs: Any) -> None:
            counts[name] += 1

        return count

    listeners = [
        (engine.database, "before_cursor_execute", counter("statements")),
        (engine.database, "commit", counter("commits")),
        (engine.database.pool, "checkout", counter("checkouts")),
    ]
    probe = engine.processes.create(SCHEME, identity=f"{PREFIX}probe")
    moves = 10
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        with observing_driver_cursors(counter("statements")):
            for command in itertools.islice(itertools.cycle(("Go", "Back")), moves):
                engine.processes.execute(probe, command, identity=f"{PREFIX}probe")
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)
    return {f"{name}_per_execute": count / moves for name, count in counts.items()}
