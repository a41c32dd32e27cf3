"""The steps each worker of a pool holds a lease on, for the heartbeat to extend.

The heartbeat extends leases by step id: a worker records here what it claims or is handed,
and forgets what it has written or given back. (Extending "every lease this worker id holds"
needed an index on ``locked_by``, which every claim and every finished step had to update.)
A worker that gives up an identity after a database error forgets everything held under it,
so those leases run out and other workers take the steps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class HeldSteps:
    """Step ids by the worker id holding their lease; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, set[int]] = {}

    def add(self, worker_id: str, ids: Iterable[int]) -> None:
        with self._lock:
            self._ids.setdefault(worker_id, set()).update(ids)

    def remove(self, worker_id: str, ids: Iterable[int]) -> None:
        with self._lock:
            held = self._ids.get(worker_id)
            if held is not None:
                held.difference_update(ids)

    def forget(self, worker_id: str) -> None:
        """Stop extending every lease held under ``worker_id``."""
        with self._lock:
            self._ids.pop(worker_id, None)

    def by_worker(self) -> dict[str, list[int]]:
        """A copy: worker id → the ids of the steps it holds (workers holding none left out)."""
        with self._lock:
            return {worker: sorted(ids) for worker, ids in self._ids.items() if ids}
