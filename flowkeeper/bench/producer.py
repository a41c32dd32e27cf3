"""The latency benchmark's producer: ``python -m flowkeeper.bench.producer URL RATE COUNT``.

Adds ``COUNT`` no-op steps one at a time, ``RATE`` per second, from a process of its own, as
an application adds them.
"""

from __future__ import annotations

import sys
import time

import flowkeeper as fk
from flowkeeper.bench.workloads import PREFIX


def main(argv: list[str]) -> None:
    url, rate, count = argv[0], float(argv[1]), int(argv[2])
    with fk.Engine(url) as engine:
        engine.check_schema()
        started = time.perf_counter()
        for i in range(count):
            pause = started + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            engine.add_step(fk.Step(f"{PREFIX}noop"))


if __name__ == "__main__":
    main(sys.argv[1:])
