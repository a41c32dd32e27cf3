"""HTTP callbacks: actions, conditions and rules that a tenant serves from its own HTTP service.

A tenant registers a service (``engine.callbacks.add(...)``, ``POST /api/v1/callbacks``,
``flowkeeper callbacks add``): a URL, an optional bearer token, the names of the actions,
conditions and rules it serves, and a timeout. For that tenant's processes, those names are
then run by POSTing JSON to the URL — before the application's Python functions and the
built-ins of the same name, which stay the default for every other tenant. Registrations are
read from ``fk_callbacks`` and kept for ``cache_seconds`` (5 s): other servers and workers see
a change within that time, the process that made it at once.

The package's modules, each with one reason to change:

- :mod:`~flowkeeper.processes.callbacks.registration`: what a registration is (:class:`Callback`,
  its limits and checks, its rows);
- :mod:`~flowkeeper.processes.callbacks.store`: the registrations of each tenant
  (:class:`CallbackStore`, its cache, and the look-up the process registry makes);
- :mod:`~flowkeeper.processes.callbacks.calls`: the wire format and the HTTP call (request,
  answer, ``CallbackFailed``);
- :mod:`~flowkeeper.processes.callbacks.addresses`: where requests may go
  (:class:`AddressPolicy`);
- :mod:`~flowkeeper.processes.callbacks.transport`: how they get there (the ``httpx`` clients,
  the checked connections, proxies).

The names other modules use are imported from here.
"""

from __future__ import annotations

from flowkeeper.processes.callbacks.addresses import AddressPolicy, IPAddress, IPNetwork
from flowkeeper.processes.callbacks.calls import MAX_ANSWER_BYTES, WIRE_VERSION
from flowkeeper.processes.callbacks.registration import (
    DEFAULT_TIMEOUT_MS,
    KINDS,
    MAX_NAMES,
    MAX_TIMEOUT_MS,
    MAX_URL_LENGTH,
    Callback,
    CallbackNotFound,
)
from flowkeeper.processes.callbacks.store import CACHE_ENTRIES, CallbackStore, Transaction

__all__ = [
    "CACHE_ENTRIES",
    "DEFAULT_TIMEOUT_MS",
    "KINDS",
    "MAX_ANSWER_BYTES",
    "MAX_NAMES",
    "MAX_TIMEOUT_MS",
    "MAX_URL_LENGTH",
    "WIRE_VERSION",
    "AddressPolicy",
    "Callback",
    "CallbackNotFound",
    "CallbackStore",
    "IPAddress",
    "IPNetwork",
    "Transaction",
]
