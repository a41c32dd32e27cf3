"""The Python actions, conditions and rules a scheme's names resolve to.

An application registers them on the engine (``@engine.action("SendEmail")``,
``@engine.condition("IsBigAmount")``, ``@engine.rule("Manager")``). Names it does not
register fall back to the built-ins (``SetParameter``, ``CheckParameter``, the loops …);
a name found in neither is an :class:`flowkeeper.ActionNotRegistered` naming it.

A :class:`CallbackResolver` (the engine's HTTP callbacks, see
:mod:`flowkeeper.processes.callbacks`) is asked first, with the process's tenant: a name a
tenant serves from its own service wins over the application's Python function for that
tenant's processes, so the look-up is made when the action, condition or rule is called.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from flowkeeper.errors import ActionNotRegistered, InvalidArgument
from flowkeeper.processes.context import ActionContext, LiveProcess

ActionFunction = Callable[[ActionContext, Any], object]
"""``action(ctx, parameter)``; ``parameter`` is the ActionParameter, JSON-decoded if it is JSON."""

ConditionFunction = Callable[[ActionContext, Any], bool]


@runtime_checkable
class Rule(Protocol):
    """Decides whether an identity plays an actor's role (``value`` is the actor's Value)."""

    def check(self, process: LiveProcess, identity: str | None, parameter: str | None) -> bool:
        """True when ``identity`` may act as this rule says."""
        ...

    def identities(self, process: LiveProcess, parameter: str | None) -> Sequence[str]:
        """Everyone who satisfies the rule (for inboxes); optional."""
        ...


class CallbackResolver(Protocol):
    """Actions, conditions and rules a tenant serves itself (None: it serves none of that name)."""

    def action(self, tenant_id: str | None, name: str) -> ActionFunction | None:
        """The tenant's action ``name``, if it has one."""
        ...

    def condition(self, tenant_id: str | None, name: str) -> ConditionFunction | None:
        """The tenant's condition ``name``, if it has one."""
        ...

    def rule(self, tenant_id: str | None, name: str) -> Rule | None:
        """The tenant's rule ``name``, if it has one."""
        ...


F = TypeVar("F", bound=Callable[..., Any])


class _FunctionRule:
    """A plain ``check(process, identity, parameter)`` function used as a rule."""

    def __init__(self, name: str, function: Callable[..., object]) -> None:
        self.name = name
        self.function = function

    def check(self, process: LiveProcess, identity: str | None, parameter: str | None) -> bool:
        return bool(self.function(process, identity, parameter))

    def identities(self, process: LiveProcess, parameter: str | None) -> Sequence[str]:
        raise InvalidArgument(
            f"rule {self.name!r} is a function and cannot list identities; register a class "
            "with check() and identities() to use it for inboxes"
        )


def decode_parameter(text: str | None) -> Any:
    """An ActionParameter as actions receive it: JSON decoded when it is JSON, else the text.

    >>> decode_parameter('{"Value": 5}'), decode_parameter("plain"), decode_parameter(None)
    ({'Value': 5}, 'plain', None)
    """
    if text is None:
        return None
    stripped = text.strip()
    if stripped[:1] in ("{", "[", '"') or stripped in ("true", "false", "null"):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    return text


class ProcessRegistry:
    """Names → Python actions, conditions and rules, with the built-ins as a fallback.

    With a ``resolver``, the tenant's callbacks come first (see the module's docstring).
    """

    def __init__(self, resolver: CallbackResolver | None = None) -> None:
        self._resolver = resolver
        self._actions: dict[str, ActionFunction] = {}
        self._conditions: dict[str, ConditionFunction] = {}
        self._rules: dict[str, Rule] = {}
        self._lock = threading.Lock()
        from flowkeeper.processes.builtins import BUILTIN_ACTIONS, BUILTIN_CONDITIONS

        self._builtin_actions: dict[str, ActionFunction] = dict(BUILTIN_ACTIONS)
        self._builtin_conditions: dict[str, ConditionFunction] = dict(BUILTIN_CONDITIONS)

    # -- registration --------------------------------------------------------------------------

    def action(self, name: str) -> Callable[[F], F]:
        """Decorator: the function is the action ``name``."""
        return self._decorator(name, self._actions, "action")

    def condition(self, name: str) -> Callable[[F], F]:
        """Decorator: the function is the condition ``name`` (it returns a bool)."""
        return self._decorator(name, self._conditions, "condition")

    def rule(self, name: str) -> Callable[[F], F]:
        """Decorator for a rule: a class with ``check`` (and ``identities``), an instance of
        one, or a plain ``check(process, identity, parameter)`` function."""

        def register(target: F) -> F:
            self._register(name, self._rules, "rule", _as_rule(name, target))
            return target

        return register

    def _decorator(self, name: str, table: dict[str, Any], kind: str) -> Callable[[F], F]:
        def register(function: F) -> F:
            if not callable(function):
                raise InvalidArgument(f"{kind} {name!r} must be callable")
            if inspect.iscoroutinefunction(function):
                raise InvalidArgument(
                    f"{kind} {name!r} is async; process actions run inside the database "
                    "transaction and must be plain functions"
                )
            self._register(name, table, kind, function)
            return function

        return register

    def _register(self, name: str, table: dict[str, Any], kind: str, item: Any) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgument(f"{kind} names must be non-empty strings, not {name!r}")
        with self._lock:
            if name in table:
                raise InvalidArgument(f"a {kind} named {name!r} is already registered")
            table[name] = item

    # -- look-up -------------------------------------------------------------------------------

    def get_action(self, name: str) -> ActionFunction:
        """The action ``name`` (``ActionNotRegistered`` if neither the app nor a built-in,
        nor, with a resolver, the process's tenant serves it: then raised when called)."""
        found = self._actions.get(name) or self._builtin_actions.get(name)
        if self._resolver is not None:
            return _TenantAction(self._resolver.action, name, found, "action")
        if found is None:
            raise ActionNotRegistered(_missing("action", name, "action"))
        return found

    def get_condition(self, name: str) -> ConditionFunction:
        """The condition ``name`` (``ActionNotRegistered`` as for :meth:`get_action`)."""
        found = self._conditions.get(name) or self._builtin_conditions.get(name)
        if self._resolver is not None:
            return _TenantAction(self._resolver.condition, name, found, "condition")
        if found is None:
            raise ActionNotRegistered(_missing("condition", name, "condition"))
        return found

    def get_rule(self, name: str) -> Rule:
        """The rule ``name`` (``ActionNotRegistered`` as for :meth:`get_action`)."""
        found = self._rules.get(name)
        if self._resolver is not None:
            return _TenantRule(self._resolver, name, found)
        if found is None:
            raise ActionNotRegistered(_missing("rule", name, "rule"))
        return found


class _TenantAction:
    """An action or condition looked up when called: the process's tenant's callback of that
    name, else ``local`` (the app's or the built-in one)."""

    __slots__ = ("kind", "local", "lookup", "name")

    def __init__(
        self,
        lookup: Callable[[str | None, str], Callable[[ActionContext, Any], Any] | None],
        name: str,
        local: Callable[[ActionContext, Any], Any] | None,
        kind: str,
    ) -> None:
        self.lookup = lookup
        self.name = name
        self.local = local
        self.kind = kind

    def __call__(self, ctx: ActionContext, parameter: Any) -> Any:
        found = self.lookup(ctx.process.tenant_id, self.name) or self.local
        if found is None:
            raise ActionNotRegistered(_missing(self.kind, self.name, self.kind))
        return found(ctx, parameter)


class _TenantRule:
    """A rule looked up when used: the process's tenant's callback, else ``local``."""

    __slots__ = ("local", "name", "resolver")

    def __init__(self, resolver: CallbackResolver, name: str, local: Rule | None) -> None:
        self.resolver = resolver
        self.name = name
        self.local = local

    def _rule(self, process: LiveProcess) -> Rule:
        found = self.resolver.rule(process.tenant_id, self.name) or self.local
        if found is None:
            raise ActionNotRegistered(_missing("rule", self.name, "rule"))
        return found

    def check(self, process: LiveProcess, identity: str | None, parameter: str | None) -> bool:
        return self._rule(process).check(process, identity, parameter)

    def identities(self, process: LiveProcess, parameter: str | None) -> Sequence[str]:
        return self._rule(process).identities(process, parameter)


def _missing(kind: str, name: str, decorator: str) -> str:
    return (
        f"the scheme uses the {kind} {name!r} but none is registered; register it with "
        f"@engine.{decorator}({name!r}) (C# code in a scheme is never run)"
    )


def _as_rule(name: str, target: Any) -> Rule:
    if inspect.isclass(target):
        target = target()
    if callable(getattr(target, "check", None)):
        return target  # type: ignore[no-any-return]
    if callable(target):
        return _FunctionRule(name, target)
    raise InvalidArgument(
        f"rule {name!r} must be a class or object with check(process, identity, parameter), "
        f"or such a function, not {type(target).__name__}"
    )
