"""A benchmark worker process: ``python -m flowkeeper.bench.process URL WORKERS BATCH``.

Runs the benchmark implementations until no step is due, then prints its start and end times
(wall clock) as JSON, so the parent can time several processes as one run.
"""

from __future__ import annotations

import json
import sys
import time

import flowkeeper as fk
from flowkeeper.bench.workloads import register_bench_steps


def main(argv: list[str]) -> None:
    url, workers, batch = argv[0], int(argv[1]), int(argv[2])
    engine = fk.Engine(url)
    register_bench_steps(engine)
    engine.check_schema()
    start = time.time()
    stats = engine.run(workers=workers, until_idle=True, batch_size=batch)
    end = time.time()
    engine.close()
    print(json.dumps({"start": start, "end": end, "executed": stats.executed}))


if __name__ == "__main__":
    main(sys.argv[1:])
