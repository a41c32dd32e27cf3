"""Calling a callback: the request a tenant's service receives, its POST, and the answer read
into parameter changes, a result or identities (anything else raises ``CallbackFailed``).

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

import json
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from flowkeeper.errors import CallbackFailed, InvalidArgument
from flowkeeper.processes.callbacks.addresses import AddressPolicy, Refused
from flowkeeper.processes.callbacks.registration import Callback
from flowkeeper.processes.callbacks.transport import Clients, load_httpx
from flowkeeper.processes.context import ActionContext, LiveProcess
from flowkeeper.processes.parameters import SYSTEM_PARAMETERS, check_json_value

WIRE_VERSION = 1
MAX_ANSWER_BYTES = 8 * 1024 * 1024


class CallbackRule:
    """A rule served by a callback."""

    def __init__(self, caller: HttpCaller, callback: Callback, name: str) -> None:
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


class HttpCaller:
    """POSTs requests of the wire format with the pooled ``httpx`` clients of
    :class:`~flowkeeper.processes.callbacks.transport.Clients`: one that connects directly,
    through the address policy, and one per proxy the environment names."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._clients = Clients(policy)

    def close(self) -> None:
        self._clients.close()

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
        httpx = load_httpx()
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
            with self._clients.client_for(callback.url).stream(
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
        except Refused as refused:
            raise _Failure(refused.reason()) from None
        except httpx.TimeoutException:
            raise _Failure(f"no answer within {callback.timeout_ms} ms") from None
        except httpx.HTTPError as error:
            raise _Failure(f"the request failed: {type(error).__name__}: {error}") from None
        return bytes(received)


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


def _identities(answer: Any) -> list[str]:
    found = answer.get("identities") if isinstance(answer, dict) else None
    if not isinstance(found, list) or not all(isinstance(i, str) for i in found):
        raise _Failure("the answer is not an object with 'identities', a list of strings")
    return found


def _changes(answer: Any) -> tuple[dict[str, Any], list[str]]:
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
