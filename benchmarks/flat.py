"""Does `drain` stay flat as the tables grow, and does a worker's memory stay flat?

    python benchmarks/flat.py postgresql://root@127.0.0.1/bench [--rows 1000000] [--drain 1000000]

1. `drain` of ``--steps`` steps (100,000) on empty tables.
2. The same with ``--rows`` rows in the done queue and ``--rows`` future-dated rows in ready
   (inserted with one INSERT … SELECT each), reported as a ratio of (1).
3. A drain of ``--drain`` steps with this process's resident memory sampled every second.
PostgreSQL only (the bulk fill uses generate_series).
"""

from __future__ import annotations

import argparse
import threading
import time

import sqlalchemy as sa

from flowkeeper.bench import workloads


def fill(url: str, rows: int) -> None:
    engine = sa.create_engine(workloads.fresh_engine(url).url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO fk_steps_done (id, name, singleton, flow_id, state, execution_count, "
            "run_at, created_at, execution_started_at, execution_duration_ms, executed_by) "
            "SELECT 10000000000 + g, 'bench/old', false, 'old', 'null', 1, "
            "now() AT TIME ZONE 'UTC' - interval '1 day', now() AT TIME ZONE 'UTC' - interval "
            "'1 day', now() AT TIME ZONE 'UTC' - interval '1 day', 0, 'fill' "
            "FROM generate_series(1, %(n)s) g",
            {"n": rows},
        )
        connection.exec_driver_sql(
            "INSERT INTO fk_steps_ready (name, singleton, flow_id, state, execution_count, "
            "run_at, available_at, created_at) SELECT 'bench/later', false, 'later', 'null', 0, "
            "now() AT TIME ZONE 'UTC' + interval '30 days', now() AT TIME ZONE 'UTC' + "
            "interval '30 days', now() AT TIME ZONE 'UTC' FROM generate_series(1, %(n)s) g",
            {"n": rows},
        )
        connection.exec_driver_sql("ANALYZE fk_steps_ready")
        connection.exec_driver_sql("ANALYZE fk_steps_done")
    engine.dispose()


def drain_with_rows(url: str, n: int) -> workloads.Result:
    """`drain` without emptying the tables first (the filled rows stay)."""
    original = workloads.fresh_engine

    def keep_rows(u: str, **options: object) -> workloads.fk.Engine:
        engine = workloads.fk.Engine(u, **options)  # type: ignore[arg-type]
        with engine.database.begin() as connection:
            connection.exec_driver_sql(
                "DELETE FROM fk_steps_done WHERE name = 'bench/noop'; "
                "DELETE FROM fk_steps_ready WHERE name = 'bench/noop'"
            )
        return engine

    workloads.fresh_engine = keep_rows  # type: ignore[assignment]
    try:
        return workloads.drain(url, n)
    finally:
        workloads.fresh_engine = original


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--drain", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()

    empty = workloads.drain(args.url, args.steps)
    print(f"empty tables: drain {empty.rate:,.0f}/s (ceiling {empty.ceiling_rate:,.0f}/s)")
    started = time.perf_counter()
    fill(args.url, args.rows)
    print(
        f"filled {args.rows:,} done + {args.rows:,} future ready rows in "
        f"{time.perf_counter() - started:.0f} s"
    )
    full = drain_with_rows(args.url, args.steps)
    print(
        f"full tables:  drain {full.rate:,.0f}/s (ceiling {full.ceiling_rate:,.0f}/s); "
        f"{full.rate / empty.rate:.2f} of the empty-table figure"
    )

    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append(workloads.rss_mb())

    engine = workloads.fresh_engine(args.url)
    workloads.register_bench_steps(engine)
    with engine.database.begin() as connection:  # bulk: add_steps would take minutes here
        connection.exec_driver_sql(
            "INSERT INTO fk_steps_ready (name, singleton, flow_id, state, execution_count, "
            "run_at, available_at, created_at) SELECT 'bench/noop', false, 'drain', 'null', 0, "
            "now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' "
            "FROM generate_series(1, %(n)s) g",
            {"n": args.drain},
        )
    before = workloads.rss_mb()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    stats = engine.run(workers=8, until_idle=True, handle_signals=False)
    seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    tenth = max(1, len(samples) // 10)
    print(
        f"drained {stats.executed:,} steps in {seconds:.0f} s ({stats.executed / seconds:,.0f}/s); "
        f"RSS before {before:.0f} MiB, first 10% {max(samples[:tenth]):.0f} MiB, "
        f"last 10% {max(samples[-tenth:]):.0f} MiB, peak {max(samples):.0f} MiB"
    )
    engine.close()


if __name__ == "__main__":
    main()
