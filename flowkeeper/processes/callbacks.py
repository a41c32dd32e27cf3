"""HTTP callbacks: actions, conditions and rules that a tenant serves from its own HTTP service.

A tenant registers a service (``engine.callbacks.add(...)``, ``POST /api/v1/callbacks``,
``flowkeeper callbacks add``): a URL, an optional bearer token, the names of the actions,
conditions and rules it serves, and a timeout. For that tenant's processes, those names are
then run by POSTing JSON to the URL — before the application's Python functions and the
built-ins of the same name, which stay the default for every other tenant. Registrations are
read from ``fk_callbacks`` and kept for ``cache_seconds`` (5 s): other servers and workers see
a change within that time, the process that made it at once.

Wire format, version 1 (stable: fields may be added, none removed or changed). Every request
is ``POST <url>`` with ``Content-Type: application/json`` and, when the callback has a token,
``Authorization: Bearer <token>``; its body is one object::

    {"version": 1, "type": "action", "name": "Sign", "tenant_id": "acme",
     "process_id": "5f0c…", "scheme": "Invoice", "scheme_version": 3,
     "activity": "Signing", "state": "Signing", "previous_activity": "Draft",
     "previous_state": "Draft", "executed_transition": "Draft_Signing_1",
     "identity": "bob", "command": "Sign",
     "parameters": {"Amount": 120}, "parameter": {"Level": 2}}

- ``type`` is ``action``, ``condition``, ``rule_check`` or ``rule_identities``; ``name`` the
  name the scheme uses. ``tenant_id`` is null for the default tenant.
- ``parameters``: the process's parameters as an action sees them (stored and temporary
  ones; system parameters are the fields above).
- ``parameter``: for actions and conditions the ActionParameter, JSON-decoded when it is
  JSON (else the text, or null); for rules the actor's value (text or null).
- ``identity``: who executes the command; for ``rule_check`` the identity to check; null
  for ``rule_identities``, timers and automatic moves without one.

Answers, with a 2xx status (other fields are ignored):

- ``action``: ``{"parameters": {"Name": value, …}, "removed": ["Name", …]}``, both
  optional; an empty body (204) changes nothing. The values are set on (the names removed
  from) the process's parameters and saved with the move, as a Python action's changes are.
- ``condition`` and ``rule_check``: ``{"result": true}`` or ``{"result": false}``.
- ``rule_identities``: ``{"identities": ["alice", "bob"]}``.

Anything else — a timeout (``timeout_ms`` for the whole exchange, 5000 by default), a
refused connection, a status outside 2xx (redirects are not followed), a body that is not
JSON or not of this shape, a system parameter set — raises :class:`flowkeeper.CallbackFailed`
naming the service, the callback and the reason. Callbacks run inside the call's transaction,
like Python actions: a failure rolls back the whole command (the HTTP API answers 502), and a
timer step that meets one is retried. Calls need ``httpx`` (the ``server`` extra).

Where requests may go (:class:`AddressPolicy`): not to loopback, link-local (the cloud
metadata service 169.254.169.254 among them), unspecified, multicast or reserved addresses,
unless the operator allows them (``Engine(callback_allowed_hosts=[…])``); private networks are
allowed unless blocked (``Engine(callback_blocked_networks=[…])``). A URL whose host is such an
address is refused when it is added (names are not resolved then); every connection resolves
its host and is refused, before anything is sent, if any address it resolves to is forbidden,
and it connects only to the addresses it checked (no second look-up that DNS could answer
differently). URLs with credentials (``user:password@``) are refused: the token is the secret.
Listings and messages show URLs without their query; only the POST uses the full URL.
"""

from __future__ import annotations

import builtins
import ipaddress
import json
import re
import secrets
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from flowkeeper.clock import utcnow
from flowkeeper.errors import (
    CallbackFailed,
    ConfigurationError,
    FlowkeeperError,
    InvalidArgument,
)
from flowkeeper.processes.context import ActionContext, LiveProcess
from flowkeeper.processes.parameters import SYSTEM_PARAMETERS, check_json_value
from flowkeeper.processes.registry import ActionFunction, ConditionFunction, Rule
from flowkeeper.processes.store import tenant_key
from flowkeeper.steps.model import check_text
from flowkeeper.storage.tables import NAME_LENGTH, callbacks

WIRE_VERSION = 1
DEFAULT_TIMEOUT_MS = 5000
MAX_TIMEOUT_MS = 60_000
"""A callback runs while its process's row is locked: longer waits are refused."""
MAX_URL_LENGTH = 2000
MAX_NAMES = 1000
"""Most names of one kind a callback may serve."""
MAX_ANSWER_BYTES = 8 * 1024 * 1024
CACHE_ENTRIES = 10_000
KINDS = ("action", "condition", "rule")

Transaction = Callable[..., AbstractContextManager[sa.Connection]]


class CallbackNotFound(FlowkeeperError, LookupError):
    """No callback has the given id (in the caller's tenant)."""


@dataclass(frozen=True)
class Callback:
    """A registered service; ``tenant_id`` ``""`` is the default tenant."""

    id: str
    tenant_id: str
    url: str
    token: str | None
    actions: tuple[str, ...]
    conditions: tuple[str, ...]
    rules: tuple[str, ...]
    timeout_ms: int
    created_at: datetime

    def __repr__(self) -> str:  # never the token, nor credentials or a query in the URL
        return (
            f"Callback(id={self.id!r}, tenant_id={self.tenant_id!r}, url={self.shown_url!r}, "
            f"actions={self.actions!r}, conditions={self.conditions!r}, rules={self.rules!r})"
        )

    @property
    def shown_url(self) -> str:
        """The URL without credentials and query (which may hold secrets): what listings and
        messages show. Requests go to :attr:`url`."""
        return _shown_url(self.url)

    def names(self, kind: str) -> tuple[str, ...]:
        """The names of ``kind`` (``action``, ``condition`` or ``rule``) it serves."""
        return {"action": self.actions, "condition": self.conditions, "rule": self.rules}[kind]


@dataclass
class _Entry:
    expires: float
    served: dict[tuple[str, str], Callback]


@dataclass
class _Flight:
    """One read of a tenant's registrations, which the threads that need them wait for."""

    generation: int
    done: threading.Event = field(default_factory=threading.Event)
    entry: _Entry | None = None
    """What the read found; None once done if it failed."""


class CallbackStore:
    """The callbacks of one engine (``engine.callbacks``): registration, and the look-up the
    process registry makes for each action, condition and rule of a tenant's process."""

    def __init__(
        self,
        transaction: Transaction,
        *,
        cache_seconds: float = 5.0,
        allowed_hosts: Iterable[str] = (),
        blocked_networks: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(cache_seconds, int | float) or cache_seconds < 0:
            raise InvalidArgument(f"cache_seconds must be >= 0, not {cache_seconds!r}")
        self._transaction = transaction
        self.cache_seconds = cache_seconds
        self.policy = AddressPolicy(allowed_hosts, blocked_networks)
        """Where callbacks may send requests (the engine's ``callback_allowed_hosts`` and
        ``callback_blocked_networks``)."""
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._generation = 0
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._caller = _HttpCaller(self.policy)

    # -- registration --------------------------------------------------------------------------

    def add(
        self,
        url: str,
        *,
        tenant_id: str | None = None,
        token: str | None = None,
        actions: Iterable[str] = (),
        conditions: Iterable[str] = (),
        rules: Iterable[str] = (),
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> Callback:
        """Register a service for the tenant's processes (None: the default tenant).

        A name may be served by one callback of a tenant per kind: ``InvalidArgument`` if
        another one already serves it (remove that one first). ``InvalidArgument`` too for a
        URL with credentials (``user:password@``; send a ``token``), or whose host is an
        address the :attr:`policy` refuses (a literal address, or ``localhost``; other names
        are not resolved here but each time a connection is made).
        """
        tenant = tenant_key(tenant_id)
        check_text(tenant, "tenant_id", error=InvalidArgument)
        callback = Callback(
            id=secrets.token_hex(8),
            tenant_id=tenant,
            url=self.policy.check_url(_check_url(url)),
            token=_check_token(token),
            actions=_check_names(actions, "actions"),
            conditions=_check_names(conditions, "conditions"),
            rules=_check_names(rules, "rules"),
            timeout_ms=_check_timeout(timeout_ms),
            created_at=utcnow(),
        )
        if not (callback.actions or callback.conditions or callback.rules):
            raise InvalidArgument("a callback must serve at least one action, condition or rule")
        with self._transaction(None) as conn:
            for other in self._load(conn, tenant):
                for kind in KINDS:
                    taken = sorted(set(callback.names(kind)) & set(other.names(kind)))
                    if taken:
                        raise InvalidArgument(
                            f"callback {other.id} of this tenant already serves the {kind} "
                            f"{taken[0]!r}; remove it first (one service per name)"
                        )
            conn.execute(callbacks.insert(), _row(callback))
        self.invalidate(tenant)
        return callback

    def list(
        self, *, tenant_id: str | None = None, all_tenants: bool = False
    ) -> builtins.list[Callback]:
        """The tenant's callbacks (or every tenant's), oldest first."""
        with self._transaction(None, read_only=True) as conn:
            return self._load(conn, None if all_tenants else tenant_key(tenant_id))

    def get(self, callback_id: str, *, tenant_id: str | None = None) -> Callback:
        """The tenant's callback with this id; ``CallbackNotFound`` otherwise."""
        with self._transaction(None, read_only=True) as conn:
            return self._get(conn, callback_id, tenant_key(tenant_id))

    def remove(self, callback_id: str, *, tenant_id: str | None = None) -> Callback:
        """Remove the tenant's callback; its names go back to the Python ones at once here,
        within ``cache_seconds`` elsewhere."""
        tenant = tenant_key(tenant_id)
        with self._transaction(None) as conn:
            callback = self._get(conn, callback_id, tenant)
            c = callbacks.c
            conn.execute(callbacks.delete().where(c.tenant_id == tenant, c.id == callback.id))
        self.invalidate(tenant)
        return callback

    def invalidate(self, tenant_id: str | None = None) -> None:
        """Forget cached registrations (of one tenant, or all): the next use reads them."""
        with self._lock:
            self._generation += 1
            if tenant_id is None:
                self._cache.clear()
            else:
                self._cache.pop(tenant_key(tenant_id), None)

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._caller.close()

    def _get(self, conn: sa.Connection, callback_id: str, tenant: str) -> Callback:
        check_text(callback_id, "callback id", required=True, error=InvalidArgument)
        c = callbacks.c
        row = conn.execute(
            sa.select(callbacks).where(c.tenant_id == tenant, c.id == callback_id)
        ).first()
        if row is None:
            raise CallbackNotFound(f"no callback has the id {callback_id!r}")
        return _callback(row)

    def _load(self, conn: sa.Connection, tenant: str | None) -> builtins.list[Callback]:
        c = callbacks.c
        query = sa.select(callbacks).order_by(c.created_at, c.id)
        if tenant is not None:
            query = query.where(c.tenant_id == tenant)
        return [_callback(row) for row in conn.execute(query)]

    # -- the resolver the process registry consults ----------------------------------------------

    def action(self, tenant_id: str | None, name: str) -> ActionFunction | None:
        """The tenant's callback action ``name`` as an ``action(ctx, parameter)``, or None."""
        callback = self._find(tenant_id, "action", name)
        if callback is None:
            return None
        return lambda ctx, parameter: self._caller.action(callback, name, ctx, parameter)

    def condition(self, tenant_id: str | None, name: str) -> ConditionFunction | None:
        """The tenant's callback condition ``name``, or None."""
        callback = self._find(tenant_id, "condition", name)
        if callback is None:
            return None
        return lambda ctx, parameter: self._caller.condition(callback, name, ctx, parameter)

    def rule(self, tenant_id: str | None, name: str) -> Rule | None:
        """The tenant's callback rule ``name``, or None."""
        callback = self._find(tenant_id, "rule", name)
        return None if callback is None else _CallbackRule(self._caller, callback, name)

    def _find(self, tenant_id: str | None, kind: str, name: str) -> Callback | None:
        tenant = tenant_key(tenant_id)
        entry = self._cache.get(tenant)
        if entry is None or entry.expires <= self._clock():
            entry = self._refresh(tenant, entry)
        return entry.served.get((kind, name))

    def _refresh(self, tenant: str, stale: _Entry | None) -> _Entry:
        """The tenant's registrations, read by one thread at a time (single flight): while one
        thread reads them, the others use the expired entry if there is one, else wait for
        what that thread reads."""
        with self._lock:
            flight = self._flights.get(tenant)
            if flight is not None and stale is not None:
                # Expired, not invalidated (an invalidation drops the entry): it is at most one
                # read older than cache_seconds, the staleness every other server accepts
                # anyway, so waiting for the read would only add its time to these calls.
                return stale
            if flight is not None and flight.generation == self._generation:
                joined = True
            else:
                # No entry: the first use, or a change made here since (``invalidate``), which
                # must be seen at once, so the others wait for this read instead of using what
                # was dropped. A read begun before the change is not joined: it may miss it.
                flight = self._flights[tenant] = _Flight(self._generation)
                joined = False
        if joined:
            flight.done.wait()  # the reading thread sets it however its read ends
            if flight.entry is not None:
                return flight.entry
            # Its read failed: read alone, so that this call fails (or not) with its own error.
            return self._read(tenant, flight.generation)
        try:
            flight.entry = self._read(tenant, flight.generation)
            return flight.entry
        finally:
            with self._lock:
                if self._flights.get(tenant) is flight:
                    del self._flights[tenant]
            flight.done.set()

    def _read(self, tenant: str, generation: int) -> _Entry:
        """Read the tenant's registrations; cache them unless invalidated since
        ``generation``."""
        # Its own short read: the call's transaction may be on the caller's connection, and a
        # rule is not handed one.
        with self._transaction(None, read_only=True) as conn:
            found = self._load(conn, tenant)
        served = {  # the oldest callback wins, should two ever serve one name
            (kind, name): cb for cb in reversed(found) for kind in KINDS for name in cb.names(kind)
        }
        entry = _Entry(self._clock() + self.cache_seconds, served)
        with self._lock:
            if generation == self._generation:  # not invalidated while it was read
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[tenant] = entry
        return entry


class _CallbackRule:
    """A rule served by a callback."""

    def __init__(self, caller: _HttpCaller, callback: Callback, name: str) -> None:
        self._caller = caller
        self._callback = callback
        self._name = name

    def check(self, process: LiveProcess, identity: str | None, parameter: str | None) -> bool:
        fields = {**_process_fields(process), "identity": identity, "command": process.command}
        checked: bool = self._caller.call(
            self._callback, "rule_check", self._name, fields, parameter, _result
        )
        return checked

    def identities(self, process: LiveProcess, parameter: str | None) -> Sequence[str]:
        fields = {**_process_fields(process), "identity": None, "command": process.command}
        found: list[str] = self._caller.call(
            self._callback, "rule_identities", self._name, fields, parameter, _identities
        )
        return found


class _Failure(Exception):
    """Why a call failed: an answer of the wrong shape, a refused address, … (the caller turns
    it into ``CallbackFailed``)."""


class _HttpCaller:
    """POSTs requests of the wire format with pooled ``httpx`` clients: one that connects
    directly, through the address policy, and one per proxy the environment names."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._direct: Any = None
        self._proxied: dict[str, Any] = {}
        self._proxies: dict[str, str] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            clients = [self._direct, *self._proxied.values()]
            self._direct, self._proxied, self._proxies = None, {}, None
        for client in clients:
            if client is not None:
                client.close()

    def action(self, callback: Callback, name: str, ctx: ActionContext, parameter: Any) -> None:
        fields = {**_process_fields(ctx.process), "identity": ctx.identity, "command": ctx.command}
        changed, removed = self.call(callback, "action", name, fields, parameter, _changes)
        for key, value in changed.items():
            ctx.process.parameters[key] = value
        for key in removed:
            ctx.process.parameters.pop(key, None)

    def condition(self, callback: Callback, name: str, ctx: ActionContext, parameter: Any) -> bool:
        fields = {**_process_fields(ctx.process), "identity": ctx.identity, "command": ctx.command}
        result: bool = self.call(callback, "condition", name, fields, parameter, _result)
        return result

    def call(
        self,
        callback: Callback,
        kind: str,
        name: str,
        fields: dict[str, Any],
        parameter: Any,
        parse: Callable[[Any], Any],
    ) -> Any:
        """POST one request; what ``parse`` makes of the decoded answer (None if empty)."""
        request = {"version": WIRE_VERSION, "type": kind, "name": name, **fields}
        request["parameter"] = parameter
        try:
            try:
                body = json.dumps(request, ensure_ascii=False, allow_nan=False)
            except ValueError as error:
                raise _Failure(f"the request cannot be sent as JSON: {error}") from None
            raw = self._post(callback, body)
            try:
                answer = json.loads(raw, parse_constant=_no_constant) if raw.strip() else None
            except (ValueError, RecursionError):
                raise _Failure("the answer is not JSON") from None
            return parse(answer)
        except _Failure as error:
            raise CallbackFailed(callback.shown_url, kind, name, str(error)) from None

    def _post(self, callback: Callback, body: str) -> bytes:
        httpx = _httpx()
        # Checked here too, without resolving: a registration older than the policy, or made
        # by an engine that allows more, and requests sent through a proxy (which resolves
        # and connects itself, so names are the proxy's to restrict).
        static = self._policy.refusal_of_host(urlsplit(callback.url).hostname or "")
        if static is not None:
            raise _Failure(static.reason())
        seconds = callback.timeout_ms / 1000
        deadline = time.monotonic() + seconds
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if callback.token:
            headers["Authorization"] = f"Bearer {callback.token}"
        received = bytearray()
        try:
            with self._client_for(callback.url).stream(
                "POST",
                callback.url,
                content=body.encode("utf-8"),
                headers=headers,
                timeout=httpx.Timeout(seconds),
                follow_redirects=False,  # a redirect could point anywhere, the policy unasked
            ) as response:
                status = response.status_code
                if 300 <= status < 400:
                    raise _Failure(
                        f"it answered HTTP {status}, a redirect, which callbacks do not follow "
                        "(it could lead anywhere): register the URL it redirects to instead"
                    )
                if not 200 <= status < 300:
                    raise _Failure(f"it answered HTTP {status}")
                for chunk in response.iter_bytes():
                    received += chunk
                    if len(received) > MAX_ANSWER_BYTES:
                        raise _Failure(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise _Failure(f"no answer within {callback.timeout_ms} ms")
        except _Refused as refused:
            raise _Failure(refused.reason()) from None
        except httpx.TimeoutException:
            raise _Failure(f"no answer within {callback.timeout_ms} ms") from None
        except httpx.HTTPError as error:
            raise _Failure(f"the request failed: {type(error).__name__}: {error}") from None
        return bytes(received)

    def _client_for(self, url: str) -> Any:
        """The client that sends to ``url``: through the proxy the environment names for it
        (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, read once), else the
        direct one, whose connections the address policy checks."""
        with self._lock:
            if self._proxies is None:
                self._proxies = urllib.request.getproxies_environment()
            parts = urlsplit(url)
            proxy = self._proxies.get(parts.scheme) or self._proxies.get("all")
            if proxy and not _no_proxy(parts.hostname or "", self._proxies.get("no", "")):
                client = self._proxied.get(proxy)
                if client is None:
                    httpx = _httpx()
                    # trust_env=False: no credentials from ~/.netrc on a tenant's requests.
                    client = self._proxied[proxy] = httpx.Client(
                        proxy=proxy, verify=httpx.create_ssl_context(), trust_env=False
                    )
                return client
            if self._direct is None:
                self._direct = _direct_client(self._policy)
            return self._direct


def _no_proxy(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (``*``, or names whose subdomains match too) names ``host``."""
    host = _name(host)
    for entry in no_proxy.split(","):
        name = _name(entry.strip().lstrip("."))
        if entry.strip() == "*" or (name and (host == name or host.endswith(f".{name}"))):
            return True
    return False


def _direct_client(policy: AddressPolicy) -> Any:
    """An ``httpx.Client`` whose every new connection resolves its host, is refused (before
    anything is sent) if one of the addresses is forbidden, and connects only to the
    addresses it checked: DNS cannot answer one thing to the check and another to the
    connection."""
    httpx = _httpx()
    import httpcore  # httpx's own transport

    class CheckedBackend(httpcore.SyncBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:
            try:
                addresses = policy.addresses(host, port)
            except (OSError, UnicodeError) as error:  # not resolved: as httpcore reports it
                raise httpcore.ConnectError(str(error)) from None
            failed: Exception = httpcore.ConnectError(f"{host} resolves to no address")
            for address in addresses:  # in order, as socket.create_connection tries them
                try:
                    return super().connect_tcp(
                        address, port, timeout, local_address, socket_options
                    )
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                    failed = error
            raise failed

    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no public way to choose how its transport connects; it sends through _pool,
    # replaced by the same pool (httpx's default limits) over the checked backend. The tests
    # of the address policy fail should a version of httpx stop sending through it.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=CheckedBackend(),
    )
    # trust_env=False: proxies are chosen by the caller, and no credentials come from ~/.netrc.
    return httpx.Client(transport=transport, follow_redirects=False, trust_env=False)


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise ConfigurationError(
            "HTTP callbacks need httpx, which is not installed; install it with: "
            "pip install 'flowkeeper[server]'"
        ) from None
    return httpx


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _process_fields(process: LiveProcess) -> dict[str, Any]:
    return {
        "tenant_id": process.tenant_id or None,
        "process_id": process.id,
        "scheme": process.scheme_code,
        "scheme_version": process.scheme_version,
        "activity": process.activity,
        "state": process.state,
        "previous_activity": process.previous_activity,
        "previous_state": process.previous_state,
        "executed_transition": process.executed_transition,
        "parameters": process.parameters.stored(),
    }


def _result(answer: Any) -> bool:
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, bool):
        raise _Failure("the answer is not an object with 'result': true or false")
    return result


def _identities(answer: Any) -> builtins.list[str]:
    found = answer.get("identities") if isinstance(answer, dict) else None
    if not isinstance(found, list) or not all(isinstance(i, str) for i in found):
        raise _Failure("the answer is not an object with 'identities', a list of strings")
    return found


def _changes(answer: Any) -> tuple[dict[str, Any], builtins.list[str]]:
    """The parameters an action's answer sets and removes, checked before any is applied (an
    empty answer changes nothing)."""
    if answer is None:
        return {}, []
    if not isinstance(answer, dict):
        raise _Failure("the answer is not a JSON object")
    changed = answer.get("parameters")
    changed = {} if changed is None else changed
    removed = answer.get("removed")
    removed = [] if removed is None else removed
    if not isinstance(changed, dict):
        raise _Failure("'parameters' in the answer is not an object")
    if not isinstance(removed, list) or not all(isinstance(n, str) for n in removed):
        raise _Failure("'removed' in the answer is not a list of names")
    for key in [*changed, *removed]:
        if not key or key in SYSTEM_PARAMETERS:
            raise _Failure(f"the answer changes {key!r}, which is no parameter it may set")
    both = sorted(set(changed) & set(removed))
    if both:
        raise _Failure(f"the answer both sets and removes {both[0]!r}")
    for key, value in changed.items():
        try:
            check_json_value(key, value)
        except InvalidArgument as error:
            raise _Failure(str(error)) from None
    return changed, removed


# -- where requests may go -------------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK = ipaddress.ip_address("127.0.0.1")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?", re.IGNORECASE)


class AddressPolicy:
    """Which hosts callbacks may send requests to (``engine.callbacks.policy``).

    Refused by default: loopback (the server itself), link-local (among them the cloud
    metadata service, 169.254.169.254), unspecified, multicast and reserved addresses, and the
    IPv4 ones among them written as IPv6 (``::ffff:127.0.0.1``, ``64:ff9b::a9fe:a9fe``).
    Private networks (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed: callback services
    usually live on the operator's network.

    ``allowed_hosts``: host names, addresses and networks (``"callbacks.internal"``,
    ``"127.0.0.1"``, ``"fd00::/8"``) allowed even so; a name is allowed whatever it resolves to,
    an address or network wherever it is named from. ``blocked_networks``: networks refused as
    well (``"10.0.0.0/8"``); an allowed host wins over them. ``["0.0.0.0/0", "::/0"]`` allows
    every address.
    """

    def __init__(
        self, allowed_hosts: Iterable[str] = (), blocked_networks: Iterable[str] = ()
    ) -> None:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        what = "callback_allowed_hosts"
        for entry in _entries(allowed_hosts, what):
            network = (
                _checked_network(entry, what)
                if "/" in entry and "://" not in entry
                else _network(entry)
            )
            if network is not None:
                networks.append(network)
            elif _HOST_NAME.fullmatch(entry):
                names.add(_name(entry))
            else:
                raise InvalidArgument(
                    f"callback_allowed_hosts: {entry!r} is neither a host name nor an address or "
                    "network; write 'callbacks.internal', '127.0.0.1' or '10.0.0.0/8' (no "
                    "scheme, port or wildcard)"
                )
        self.allowed_names = frozenset(names)
        self.allowed_networks = tuple(networks)
        what = "callback_blocked_networks"
        self.blocked_networks = tuple(
            _checked_network(entry, what) for entry in _entries(blocked_networks, what)
        )

    def __repr__(self) -> str:
        allowed = sorted(self.allowed_names) + [str(n) for n in self.allowed_networks]
        blocked = [str(n) for n in self.blocked_networks]
        return f"AddressPolicy(allowed_hosts={allowed!r}, blocked_networks={blocked!r})"

    def why_refused(self, address: IPAddress) -> str | None:
        """What makes ``address`` one that callbacks may not reach (``"a loopback address
        (this server itself)"``), or None if they may."""
        inner = _embedded_ipv4(address)
        if any(a in n for a in (address, inner) if a for n in self.allowed_networks):
            return None
        # An IPv6 form of an IPv4 address (which ipaddress counts as reserved) is what it
        # stands for: NAT64 reaches public IPv4 services that way, and ::ffff:127.0.0.1 this one.
        judged = address if inner is None else inner
        why = _special(judged) or next(
            (
                f"an address in {network}, which callback_blocked_networks refuses"
                for network in self.blocked_networks
                if judged in network
            ),
            None,
        )
        if why is None or inner is None:
            return why
        return f"the IPv6 form of {inner}, {why}"

    def refusal_of_host(self, host: str) -> _Refused | None:
        """Why a URL's ``host`` is refused without resolving it — an address the policy
        refuses (in any notation: ``127.1``, ``2130706433``), or ``localhost`` unless loopback
        is allowed — or None. Other names are checked where connections are made."""
        if _name(host) in self.allowed_names:
            return None
        address = _literal_address(host)
        if address is not None:
            why = self.why_refused(address)
            if why is None:
                return None
            # 127.1 is 127.0.0.1; ::ffff:127.0.0.1 is shown as it is written.
            return _Refused(host, host if ":" in host else str(address), why)
        name = _name(host)
        if (name == "localhost" or name.endswith(".localhost")) and self.why_refused(_LOOPBACK):
            return _Refused(host, None, "a loopback name (this server itself)")
        return None

    def check_url(self, url: str) -> str:
        """``url``, or ``InvalidArgument`` if :meth:`refusal_of_host` refuses its host."""
        refused = self.refusal_of_host(urlsplit(url).hostname or "")
        if refused is None:
            return url
        shown = _shown_url(url)
        raise InvalidArgument(
            f"url {shown} is refused: {refused.subject()}; callbacks may not reach such "
            f"addresses. Register a service at another address, or have the server's operator "
            f"allow this one: {refused.allow()} (and --allowed-host for `flowkeeper callbacks "
            "add`)"
        )

    def addresses(self, host: str, port: int) -> builtins.list[str]:
        """The addresses ``host`` resolves to, to connect to in order; :class:`_Refused` if
        one of them is refused (``OSError`` if it does not resolve)."""
        found: builtins.list[str] = []
        for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            address = str(sockaddr[0])
            if family == socket.AF_INET6 and len(sockaddr) == 4 and sockaddr[3]:
                address = f"{address}%{sockaddr[3]}"  # a link-local address's scope
            if address not in found:
                found.append(address)
        if _name(host) in self.allowed_names:
            return found
        for address in found:
            why = self.why_refused(ipaddress.ip_address(address))
            if why is not None:
                raise _Refused(host, address, why)
        return found


class _Refused(Exception):
    """A host the address policy refuses: ``host`` is (or resolves to) ``address``, ``why``."""

    def __init__(self, host: str, address: str | None, why: str) -> None:
        super().__init__(host, address, why)
        self.host = host
        self.address = address
        self.why = why

    def subject(self) -> str:
        if self.address is None or self.address == self.host:
            return f"its host {self.host} is {self.why}"
        if _literal_address(self.host) is not None:  # 127.1, 2130706433, …
            return f"its host {self.host} ({self.address}) is {self.why}"
        return f"its host {self.host} resolves to {self.address}, {self.why}"

    def allow(self) -> str:
        address = None if self.address is None else self.address.split("%")[0]  # no scope
        if address is None or _literal_address(self.host) is not None:
            return f"Engine(callback_allowed_hosts=[{(address or _name(self.host))!r}])"
        return (
            f"Engine(callback_allowed_hosts=[{_name(self.host)!r}]) (this name) or "
            f"[{address!r}] (this address)"
        )

    def reason(self) -> str:
        """For ``CallbackFailed``: what was refused, and what to change."""
        return (
            f"{self.subject()}; callbacks may not reach such addresses, so nothing was sent. "
            f"Register the service at another address, or have the server's operator allow "
            f"this one: {self.allow()}"
        )


def _entries(value: Iterable[str], what: str) -> builtins.list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidArgument(
            f"{what} must be a list of strings (such as [{'127.0.0.1'!r}]), not {value!r}"
        )
    found = list(value)
    for entry in found:
        if not isinstance(entry, str) or not entry.strip():
            raise InvalidArgument(f"{what} must list non-empty strings, not {entry!r}")
    return [entry.strip() for entry in found]


def _network(entry: str) -> IPNetwork | None:
    """``entry`` as a network (an address: a network of one), or None."""
    try:
        return ipaddress.ip_network(entry)
    except ValueError:
        return None


def _checked_network(entry: str, what: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry)
    except ValueError as error:
        raise InvalidArgument(
            f"{what}: {entry!r} is not an address or network such as '10.0.0.0/8' ({error})"
        ) from None


def _name(host: str) -> str:
    return host.lower().rstrip(".")


def _literal_address(host: str) -> IPAddress | None:
    """``host`` as an address, in any notation the resolver reads as one without DNS
    (``127.1``, ``0x7f000001`` and ``2130706433`` are 127.0.0.1); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host:
        return None
    try:
        found = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(found[0][4][0]) if found else None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped ``::ffff:a.b.c.d``, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _special(address: IPAddress) -> str | None:
    if address in _METADATA:
        return "a link-local address (the cloud metadata service)"
    if address.is_loopback:
        return "a loopback address (this server itself)"
    if address.is_unspecified:
        return "an unspecified address (this server itself)"
    if address in _THIS_NETWORK:
        return "an unspecified address ('this network', 0.0.0.0/8)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    return None


def _shown_url(url: str) -> str:
    """``url`` without credentials, query and fragment (which may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# -- validation and rows ---------------------------------------------------------------------------


def _check_url(url: object) -> str:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(f"url must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url) or not url.isascii():
        raise InvalidArgument(f"url must be ASCII without spaces or control characters: {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as error:
        raise InvalidArgument(f"url {url!r} cannot be parsed: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"url must be an http:// or https:// URL with a host, not {url!r}")
    if "@" in parts.netloc:
        raise InvalidArgument(
            f"url {_shown_url(url)} has credentials (user:password@ before the host), which "
            "would be stored with it and could be shown with it; remove them and send the "
            "secret as the token instead (Authorization: Bearer <token>)"
        )
    return url


def _check_token(token: object) -> str | None:
    if token is None or token == "":
        return None
    if (
        not isinstance(token, str)
        or len(token) > NAME_LENGTH
        or not all(33 <= ord(ch) <= 126 for ch in token)
    ):
        raise InvalidArgument(
            f"token must be at most {NAME_LENGTH} visible ASCII characters (no spaces)"
        )
    return token


def _check_names(names: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise InvalidArgument(f"{what} must be a list of names, not {names!r}")
    found = list(names)
    if len(found) > MAX_NAMES:
        raise InvalidArgument(f"{what} may list at most {MAX_NAMES} names")
    for name in found:
        check_text(name, f"a name in {what}", required=True, error=InvalidArgument)
    return tuple(dict.fromkeys(found))


def _check_timeout(timeout_ms: object) -> int:
    if (
        isinstance(timeout_ms, bool)
        or not isinstance(timeout_ms, int)
        or not 1 <= timeout_ms <= MAX_TIMEOUT_MS
    ):
        raise InvalidArgument(
            f"timeout_ms must be an integer from 1 to {MAX_TIMEOUT_MS}, not {timeout_ms!r}"
        )
    return timeout_ms


def _row(callback: Callback) -> dict[str, Any]:
    return {
        "tenant_id": callback.tenant_id,
        "id": callback.id,
        "url": callback.url,
        "token": callback.token,
        "actions": json.dumps(list(callback.actions), ensure_ascii=False),
        "conditions": json.dumps(list(callback.conditions), ensure_ascii=False),
        "rules": json.dumps(list(callback.rules), ensure_ascii=False),
        "timeout_ms": callback.timeout_ms,
        "created_at": callback.created_at,
    }


def _callback(row: Any) -> Callback:
    return Callback(
        id=row.id,
        tenant_id=row.tenant_id,
        url=row.url,
        token=row.token,
        actions=tuple(json.loads(row.actions)),
        conditions=tuple(json.loads(row.conditions)),
        rules=tuple(json.loads(row.rules)),
        timeout_ms=row.timeout_ms,
        created_at=row.created_at,
    )
