"""A benchmark worker process: ``python -m flowkeeper.bench.process URL WORKERS BATCH``.

It imports, connects and opens its workers' connections, prints ``ready`` and waits for a
line on its standard input: the parent starts every process at once, so that their start-up
(a Python import takes a good part of a second of CPU) is not timed as part of the drain,
nor slows the process that would otherwise start draining first. It then runs the benchmark
implementations until no step is due and prints its start and end times (wall clock) as
JSON, so the parent can time several processes as one run.
"""

from __future__ import annotations

import json
import sys
import time

import flowkeeper as fk
from flowkeeper.bench.workloads import READY, register_bench_steps


def main(argv: list[str]) -> None:
    url, workers, batch = argv[0], int(argv[1]), int(argv[2])
    engine = fk.Engine(url)
    register_bench_steps(engine)
    engine.check_schema()
    # Open the connections the workers will take from the pool, as a running worker has.
    held = [engine.database.connect() for _ in range(workers)]
    for connection in held:
        connection.close()
    print(READY, flush=True)
    sys.stdin.readline()
    start = time.time()
    stats = engine.run(workers=workers, until_idle=True, batch_size=batch)
    end = time.time()
    engine.close()
    print(json.dumps({"start": start, "end": end, "executed": stats.executed}))


if __name__ == "__main__":
    main(sys.argv[1:])
