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
"""

from __future__ import annotations

import builtins
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
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
        """The URL without credentials and query (which may hold secrets), for messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def names(self, kind: str) -> tuple[str, ...]:
        """The names of ``kind`` (``action``, ``condition`` or ``rule``) it serves."""
        return {"action": self.actions, "condition": self.conditions, "rule": self.rules}[kind]


@dataclass
class _Entry:
    expires: float
    served: dict[tuple[str, str], Callback]


class CallbackStore:
    """The callbacks of one engine (``engine.callbacks``): registration, and the look-up the
    process registry makes for each action, condition and rule of a tenant's process."""

    def __init__(
        self,
        transaction: Transaction,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(cache_seconds, int | float) or cache_seconds < 0:
            raise InvalidArgument(f"cache_seconds must be >= 0, not {cache_seconds!r}")
        self._transaction = transaction
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._generation = 0
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        self._caller = _HttpCaller()

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
        another one already serves it (remove that one first).
        """
        tenant = tenant_key(tenant_id)
        check_text(tenant, "tenant_id", error=InvalidArgument)
        callback = Callback(
            id=secrets.token_hex(8),
            tenant_id=tenant,
            url=_check_url(url),
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
        """Read the tenant's registrations; while another thread reads them, use the stale ones
        (so one connection at a time reads them, beside the transactions waiting on them)."""
        with self._lock:
            if stale is not None and tenant in self._refreshing:
                return stale
            self._refreshing.add(tenant)
            generation = self._generation
        try:
            # Its own short read: the call's transaction may be on the caller's connection,
            # and a rule is not handed one.
            with self._transaction(None, read_only=True) as conn:
                found = self._load(conn, tenant)
        finally:
            with self._lock:
                self._refreshing.discard(tenant)
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


class _Malformed(Exception):
    """An answer of the wrong shape (the caller turns it into ``CallbackFailed``)."""


class _HttpCaller:
    """POSTs requests of the wire format with one pooled ``httpx.Client``."""

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

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
                raise _Malformed(f"the request cannot be sent as JSON: {error}") from None
            raw = self._post(callback, body)
            try:
                answer = json.loads(raw, parse_constant=_no_constant) if raw.strip() else None
            except (ValueError, RecursionError):
                raise _Malformed("the answer is not JSON") from None
            return parse(answer)
        except _Malformed as error:
            raise CallbackFailed(callback.shown_url, kind, name, str(error)) from None

    def _post(self, callback: Callback, body: str) -> bytes:
        httpx = _httpx()
        seconds = callback.timeout_ms / 1000
        deadline = time.monotonic() + seconds
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if callback.token:
            headers["Authorization"] = f"Bearer {callback.token}"
        received = bytearray()
        try:
            with self._http().stream(
                "POST",
                callback.url,
                content=body.encode("utf-8"),
                headers=headers,
                timeout=httpx.Timeout(seconds),
            ) as response:
                if not 200 <= response.status_code < 300:
                    raise _Malformed(f"it answered HTTP {response.status_code}")
                for chunk in response.iter_bytes():
                    received += chunk
                    if len(received) > MAX_ANSWER_BYTES:
                        raise _Malformed(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise _Malformed(f"no answer within {callback.timeout_ms} ms")
        except httpx.TimeoutException:
            raise _Malformed(f"no answer within {callback.timeout_ms} ms") from None
        except httpx.HTTPError as error:
            raise _Malformed(f"the request failed: {type(error).__name__}: {error}") from None
        return bytes(received)

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _httpx().Client(follow_redirects=False)
            return self._client


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
        raise _Malformed("the answer is not an object with 'result': true or false")
    return result


def _identities(answer: Any) -> builtins.list[str]:
    found = answer.get("identities") if isinstance(answer, dict) else None
    if not isinstance(found, list) or not all(isinstance(i, str) for i in found):
        raise _Malformed("the answer is not an object with 'identities', a list of strings")
    return found


def _changes(answer: Any) -> tuple[dict[str, Any], builtins.list[str]]:
    """The parameters an action's answer sets and removes, checked before any is applied (an
    empty answer changes nothing)."""
    if answer is None:
        return {}, []
    if not isinstance(answer, dict):
        raise _Malformed("the answer is not a JSON object")
    changed = answer.get("parameters")
    changed = {} if changed is None else changed
    removed = answer.get("removed")
    removed = [] if removed is None else removed
    if not isinstance(changed, dict):
        raise _Malformed("'parameters' in the answer is not an object")
    if not isinstance(removed, list) or not all(isinstance(n, str) for n in removed):
        raise _Malformed("'removed' in the answer is not a list of names")
    for key in [*changed, *removed]:
        if not key or key in SYSTEM_PARAMETERS:
            raise _Malformed(f"the answer changes {key!r}, which is no parameter it may set")
    both = sorted(set(changed) & set(removed))
    if both:
        raise _Malformed(f"the answer both sets and removes {both[0]!r}")
    for key, value in changed.items():
        try:
            check_json_value(key, value)
        except InvalidArgument as error:
            raise _Malformed(str(error)) from None
    return changed, removed


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
