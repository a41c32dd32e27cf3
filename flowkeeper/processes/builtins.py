"""The actions and conditions of OptimaJet's BasicPlugin and LoopsPlugin that schemes use.

Each receives ``(ctx, parameter)``: the ActionParameter, a JSON object (decoded or as text;
missing keys take OptimaJet's defaults). They read and write ``ctx.process.parameters``.
A bad parameter raises :class:`~flowkeeper.errors.InvalidArgument` naming the built-in and
the key. ``ForRootProcess`` is accepted but, as Flowkeeper has no subprocesses yet, always
means this process.

Loops. The activity holding ``StartLoopFor``/``StartLoopForeach``/
``StartLoopForeachFromParameter`` is entered once per iteration. Its loop's state lives in the
parameter ``LoopStateParameterName`` (default ``LoopState``), an object keyed by ``LoopName``
(default ``Loop``) whose entries hold ``State`` (``Default``, ``Continue``, ``Break`` or
``Complete``, as OptimaJet names them), ``Index`` (position of the current value), ``Value``,
``Finished`` and, for foreach loops, the ``Values`` taken when the loop started. The current
value is also put in ``LoopCounterValueParameterName`` (default ``LoopCounterValue``).
An entry with no running loop (none yet, or the last one finished) starts over at the first
value; a later entry advances, and one past the last value marks the loop ``Complete``,
leaving the counter at the last value (an empty loop completes at once, counter ``null``).
``SetLoopState`` sets ``Break`` or ``Continue``: the next entry then ends the loop as broken
(``LoopIsBroken`` holds until a further entry restarts it) or goes on to the next value.
The conditions, given only ``LoopName``, look in ``LoopState`` and then in any other
parameter holding loop states (for schemes that renamed it).
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Callable, MutableMapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from flowkeeper.errors import InvalidArgument

if TYPE_CHECKING:
    from flowkeeper.processes.context import ActionContext
    from flowkeeper.processes.registry import ActionFunction, ConditionFunction

__all__ = ["BUILTIN_ACTIONS", "BUILTIN_CONDITIONS"]

Data = dict[str, Any]
Params = MutableMapping[str, Any]


# -- reading the ActionParameter ---------------------------------------------------------------


def _params(builtin: str, parameter: Any) -> Data:
    from flowkeeper.processes.registry import decode_parameter  # registry imports this module

    if isinstance(parameter, str):
        parameter = decode_parameter(parameter) if parameter.strip() else None
    if parameter is None:
        return {}
    if not isinstance(parameter, dict):
        raise InvalidArgument(f"{builtin}: the parameter must be a JSON object, not {parameter!r}")
    return parameter


def _unset(data: Data, key: str) -> bool:
    return data.get(key) is None or data.get(key) == ""


def _name(builtin: str, data: Data, key: str, default: str | None = None) -> str:
    value = data.get(key)
    if _unset(data, key):
        if default is None:
            raise InvalidArgument(f"{builtin}: {key!r} is required")
        return default
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{builtin}: {key!r} must be a non-empty string, not {value!r}")
    return value.strip()


def _flag(builtin: str, data: Data, key: str) -> bool:
    value = data.get(key)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if _unset(data, key) or isinstance(value, bool):
        return bool(value)
    raise InvalidArgument(f"{builtin}: {key!r} must be true or false, not {value!r}")


def _choice(builtin: str, data: Data, key: str, *names: str, aliases: Data | None = None) -> str:
    """``data[key]`` as one of ``names`` (any case, or an alias); the first when unset."""
    value = data.get(key)
    if _unset(data, key):
        return names[0]
    spelled = {name.lower(): name for name in names} | (aliases or {})
    found = spelled.get(value.strip().lower()) if isinstance(value, str) else None
    if found is None:
        known = ", ".join(names[:-1]) + " or " + names[-1]
        raise InvalidArgument(f"{builtin}: {key!r} must be {known}, not {value!r}")
    return found


def _separator(builtin: str, data: Data) -> str:
    value = data.get("Separator")
    if value is None or isinstance(value, str):
        return value or ","
    raise InvalidArgument(f"{builtin}: 'Separator' must be a string, not {value!r}")


def _items(builtin: str, key: str, source: Any, separator: str) -> list[Any]:
    """A list as given, or a string split at ``separator`` (items trimmed, empty ones dropped)."""
    if source is None or isinstance(source, list):
        return list(source or [])
    if isinstance(source, str):
        return [item.strip() for item in source.split(separator) if item.strip()]
    if isinstance(source, (bool, int, float)):
        return [source]
    raise InvalidArgument(
        f"{builtin}: {key!r} must be a list or a separated string, not {source!r}"
    )


def _number(value: Any) -> Decimal | None:
    """The number ``value`` stands for (a number or a numeric string), else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        value = repr(value)
    if not isinstance(value, str) or "_" in value:
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "", True: "true", False: "false"}[value]
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def _set(builtin: str, params: Params, name: str, value: Any, remove: bool = False) -> None:
    try:
        if not remove:
            params[name] = value
        elif name in params:
            del params[name]
    except InvalidArgument as error:  # a system parameter
        raise InvalidArgument(f"{builtin}: {error}") from None


# -- BasicPlugin -------------------------------------------------------------------------------


def set_parameter(ctx: ActionContext, parameter: Any) -> None:
    """``SetParameter``: ``{"ParameterName", "Value", "ForRootProcess"}`` sets the parameter
    to ``Value`` exactly as given (OptimaJet's designer writes strings; expressions and
    ``CheckParameter`` treat numeric strings as numbers). System parameters are refused."""
    data = _params("SetParameter", parameter)
    name = _name("SetParameter", data, "ParameterName")
    _flag("SetParameter", data, "ForRootProcess")
    if "Value" not in data:
        raise InvalidArgument("SetParameter: 'Value' is required")
    _set("SetParameter", ctx.process.parameters, name, data["Value"])


def remove_parameter(ctx: ActionContext, parameter: Any) -> None:
    """``RemoveParameter``: ``{"ParameterName", "ForRootProcess"}`` removes the parameter if
    it is set (nothing happens if it is not). System parameters are refused."""
    data = _params("RemoveParameter", parameter)
    name = _name("RemoveParameter", data, "ParameterName")
    _flag("RemoveParameter", data, "ForRootProcess")
    _set("RemoveParameter", ctx.process.parameters, name, None, remove=True)


def _equal(a: Any, b: Any) -> bool:
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return x == y
    if isinstance(a, bool) or isinstance(b, bool):
        return _text(a).lower() == _text(b).lower()
    return _text(a) == _text(b)


def _order(a: Any, b: Any) -> int | None:
    """-1, 0 or 1: as numbers if both are, else as text; ``None`` when either is null."""
    if a is None or b is None:
        return None
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return (x > y) - (x < y)
    s, t = _text(a), _text(b)
    return (s > t) - (s < t)


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "Equal": _equal,
    "Contains": lambda a, v: (
        any(_equal(item, v) for item in a) if isinstance(a, list) else _text(v) in _text(a)
    ),
    "StartWith": lambda a, v: _text(a).startswith(_text(v)),
    "EndWith": lambda a, v: _text(a).endswith(_text(v)),
    "StartAndEndWith": lambda a, v: _text(a).startswith(_text(v)) and _text(a).endswith(_text(v)),
    "In": lambda a, items: any(_equal(a, item) for item in items),
}
_ORDERS = {"Greater": (1,), "Less": (-1,), "GreaterOrEqual": (0, 1), "LessOrEqual": (-1, 0)}
_COMPARE_TYPES = [name for test in _TESTS for name in (test, "Not" + test)] + [*_ORDERS]


def check_parameter(ctx: ActionContext, parameter: Any) -> bool:
    """``CheckParameter``: ``{"ParameterName", "CompareType", "Value", "Separator",
    "ForRootProcess"}`` compares the parameter with ``Value``.

    Compare types (OptimaJet's, any case; ``StartsWith``-style spellings also accepted):
    ``Equal``, ``NotEqual``; ``Contains``/``NotContains`` (Value is a substring of the
    parameter, or an item of it when it is a list); ``StartWith``, ``EndWith``,
    ``StartAndEndWith`` and their ``Not…`` forms; ``Greater``, ``Less``, ``GreaterOrEqual``,
    ``LessOrEqual``; ``In``/``NotIn`` (Value split at ``Separator``, default ``,``, items
    trimmed). Two numbers or numeric strings compare as numbers, anything else as text
    (``"true"`` equals true in any case). A missing parameter is null: equal to null or
    ``""`` and ordered with nothing (the four orderings are false)."""
    b = "CheckParameter"
    data = _params(b, parameter)
    name = _name(b, data, "ParameterName")
    given = _name(b, data, "CompareType")
    spelled = given.lower().replace("starts", "start").replace("ends", "end")
    compare = {known.lower(): known for known in _COMPARE_TYPES}.get(spelled)
    if compare is None:
        known = ", ".join(_COMPARE_TYPES)
        raise InvalidArgument(f"{b}: 'CompareType' must be one of {known}; not {given!r}")
    separator = _separator(b, data)
    _flag(b, data, "ForRootProcess")
    actual, value = ctx.process.parameters.get(name), data.get("Value")
    if compare in _ORDERS:
        return _order(actual, value) in _ORDERS[compare]
    test = compare.removeprefix("Not")
    if test == "In":
        value = _items(b, "Value", value, separator)
    return _TESTS[test](actual, value) != compare.startswith("Not")


# -- LoopsPlugin -------------------------------------------------------------------------------


def _loop_states(builtin: str, params: Params, name: str) -> Data:
    states = params.get(name)
    if states is not None and not isinstance(states, dict):
        raise InvalidArgument(
            f"{builtin}: parameter {name!r} holds {states!r}, not loop states "
            "(an object keyed by loop name)"
        )
    return dict(states or {})


def _is_loop(entry: Any) -> bool:
    states = ("Default", "Continue", "Break", "Complete")
    return isinstance(entry, dict) and entry.get("State") in states and "Index" in entry


def _run_loop(
    ctx: ActionContext,
    builtin: str,
    data: Data,
    start: Callable[[], Data],
    value_at: Callable[[Data, int], tuple[bool, Any]],
) -> None:
    """One entry into a loop's start activity: start, advance, complete, or end after a break.
    ``value_at(entry, index)`` says whether the loop has a value there, and which."""
    loop = _name(builtin, data, "LoopName", "Loop")
    state_name = _name(builtin, data, "LoopStateParameterName", "LoopState")
    counter_name = _name(builtin, data, "LoopCounterValueParameterName", "LoopCounterValue")
    params = ctx.process.parameters
    states = _loop_states(builtin, params, state_name)
    entry: Any = states.get(loop)
    running = _is_loop(entry) and not entry.get("Finished")
    if running and entry["State"] == "Break":
        entry = {**entry, "Finished": True}  # this entry leaves the broken loop
    else:
        if running:
            entry = {**entry, "Index": entry["Index"] + 1}
        else:
            entry = {**start(), "Index": 0, "Value": None}
        found, value = value_at(entry, entry["Index"])
        if found:
            entry.update(State="Default", Value=value, Finished=False)
            _set(builtin, params, counter_name, value)
        else:
            entry.update(State="Complete", Finished=True)
            if entry["Index"] == 0:
                _set(builtin, params, counter_name, None)
    states[loop] = entry
    _set(builtin, params, state_name, states)


_UNITS = {"y": "years", "year": "years", "mm": "months", "month": "months", "d": "days",
          "day": "days", "h": "hours", "hour": "hours", "m": "minutes", "minute": "minutes",
          "s": "seconds", "second": "seconds", "ms": "milliseconds",
          "millisecond": "milliseconds"}  # fmt: skip


def _bound(builtin: str, data: Data, key: str, kind: str) -> Any:
    value = data.get(key)
    if _unset(data, key):
        raise InvalidArgument(f"{builtin}: {key!r} is required")
    if kind == "DateTime":
        try:
            return datetime.fromisoformat(str(value).strip())
        except ValueError:
            example = "'2024-01-31 09:30:00.000'"
            raise InvalidArgument(
                f"{builtin}: {key!r} must be a date such as {example}, not {value!r}"
            ) from None
    number = _number(value)
    if number is None:
        raise InvalidArgument(f"{builtin}: {key!r} must be a number, not {value!r}")
    if kind == "Int" and number != number.to_integral_value():
        raise InvalidArgument(f"{builtin}: {key!r} must be an integer, not {value!r}")
    return number


def _date_step(builtin: str, value: Any) -> tuple[int, timedelta]:
    """OptimaJet's date step (``"1y 3mm 2d 5h 24m 15s 50ms"``) as months and a timedelta."""
    text = value.lower() if isinstance(value, str) else ""
    found = re.findall(r"(\d+)\s*([a-z]+)", text)
    parts = [(int(n), _UNITS.get(u) or _UNITS.get(u.removesuffix("s"))) for n, u in found]
    if not re.fullmatch(r"(\s*\d+\s*[a-z]+)+\s*", text) or not all(u for _, u in parts):
        example = "'1d', '2h 30m' or '1mm'"
        raise InvalidArgument(
            f"{builtin}: 'Step' must be a date step such as {example}, not {value!r}"
        )
    months = sum(n * (12 if u == "years" else 1) for n, u in parts if u in ("years", "months"))
    rest = (timedelta(**{str(u): n}) for n, u in parts if u not in ("years", "months"))
    return months, sum(rest, timedelta())


def _add_months(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last))


def start_loop_for(ctx: ActionContext, parameter: Any) -> None:
    """``StartLoopFor``: ``{"LoopName", "LoopStateParameterName",
    "LoopCounterValueParameterName", "CounterType", "StepType", "StartValue", "EndValue",
    "Step", "IncludeLastValue"}`` counts from StartValue towards EndValue.

    ``CounterType``: ``Int`` (the default), ``Decimal`` (our extension; JSON numbers) or
    ``DateTime`` (values written ``yyyy-MM-dd HH:mm:ss.fff``, steps such as ``"1d"`` or
    ``"1y 3mm 2d 5h 24m 15s 50ms"``). ``Step`` must be positive: ``StepType`` ``Increment``
    (default) adds it, ``Decrement`` subtracts it. The n-th value is StartValue ± n·Step (no
    drift; adding months keeps the day where the month has it). ``IncludeLastValue`` (default
    false) lets the counter reach EndValue itself.
    """
    b = "StartLoopFor"
    data = _params(b, parameter)
    aliases = {"int32": "Int", "integer": "Int", "double": "Decimal", "date": "DateTime"}
    kind = _choice(b, data, "CounterType", "Int", "Decimal", "DateTime", aliases=aliases)
    sign = 1 if _choice(b, data, "StepType", "Increment", "Decrement") == "Increment" else -1
    include = _flag(b, data, "IncludeLastValue")
    first, end = _bound(b, data, "StartValue", kind), _bound(b, data, "EndValue", kind)
    if kind == "DateTime":
        if (first.tzinfo is None) != (end.tzinfo is None):
            raise InvalidArgument(f"{b}: 'StartValue' and 'EndValue' must both have a time zone")
        months, delta = _date_step(b, data.get("Step"))
        if not months and not delta:
            raise InvalidArgument(f"{b}: 'Step' must not be zero, not {data['Step']!r}")
    elif (step := _bound(b, data, "Step", kind)) <= 0:
        raise InvalidArgument(
            f"{b}: 'Step' must be greater than zero, not {data['Step']!r} (Decrement counts down)"
        )

    def value_at(entry: Data, n: int) -> tuple[bool, Any]:
        value: Any
        try:
            if kind == "DateTime":
                value = _add_months(first, sign * n * months) + sign * n * delta
            else:
                value = first + sign * n * step
        except (ValueError, OverflowError):  # a date beyond the calendar
            return False, None
        if not ((value < end if sign > 0 else value > end) or (include and value == end)):
            return False, None
        if kind == "DateTime":
            return True, value.isoformat(sep=" ", timespec="milliseconds")
        return True, int(value) if kind == "Int" else float(value)

    _run_loop(ctx, b, data, dict, value_at)


def _foreach(ctx: ActionContext, b: str, data: Data, values: Callable[[], Any]) -> None:
    separator, reverse = _separator(b, data), _flag(b, data, "Reverse")

    def start() -> Data:
        items = _items(b, "Values", values(), separator)
        return {"Values": items[::-1] if reverse else items}

    def value_at(entry: Data, index: int) -> tuple[bool, Any]:
        items = entry.get("Values")
        if isinstance(items, list) and index < len(items):
            return True, items[index]
        return False, None

    _run_loop(ctx, b, data, start, value_at)


def start_loop_foreach(ctx: ActionContext, parameter: Any) -> None:
    """``StartLoopForeach``: ``{"LoopName", "LoopStateParameterName",
    "LoopCounterValueParameterName", "Values", "Separator", "Reverse", "ValuesFromParameter",
    "ValuesParameterName"}`` takes each of ``Values`` in turn: a list, or a string split at
    ``Separator`` (default ``,``), items trimmed and empty ones dropped. With
    ValuesFromParameter true they come from the parameter ValuesParameterName instead (a list
    or such a string; unset means none). The values are fixed when the loop starts."""
    b = "StartLoopForeach"
    data = _params(b, parameter)

    def values() -> Any:
        if _flag(b, data, "ValuesFromParameter"):
            return ctx.process.parameters.get(_name(b, data, "ValuesParameterName"))
        return data.get("Values")

    _foreach(ctx, b, data, values)


def start_loop_foreach_from_parameter(ctx: ActionContext, parameter: Any) -> None:
    """``StartLoopForeachFromParameter``: ``StartLoopForeach`` over the values of the
    parameter ``ParameterName`` (a list, or a string split at ``Separator``)."""
    b = "StartLoopForeachFromParameter"
    data = _params(b, parameter)
    name = _name(b, data, "ParameterName")
    _foreach(ctx, b, data, lambda: ctx.process.parameters.get(name))


def _find_loop(builtin: str, params: Params, data: Data) -> tuple[str, str, Any]:
    """(loop name, the parameter holding its state, its entry or None)."""
    loop = _name(builtin, data, "LoopName", "Loop")
    named = _name(builtin, data, "LoopStateParameterName", "LoopState")
    entry = _loop_states(builtin, params, named).get(loop)
    if not _is_loop(entry) and _unset(data, "LoopStateParameterName"):
        for name, states in params.items():
            if isinstance(states, dict) and _is_loop(states.get(loop)):
                return loop, name, states[loop]
    return loop, named, entry if _is_loop(entry) else None


def set_loop_state(ctx: ActionContext, parameter: Any) -> None:
    """``SetLoopState``: ``{"LoopName", "LoopState": "Break" | "Continue"}`` (optionally
    ``LoopStateParameterName``) asks a running loop to break, or to skip to its next value;
    either happens at the next entry into its start activity. Unknown or ended loops are
    refused."""
    b = "SetLoopState"
    data = _params(b, parameter)
    if _unset(data, "LoopState"):
        raise InvalidArgument(f"{b}: 'LoopState' is required (Break or Continue)")
    wanted = _choice(b, data, "LoopState", "Break", "Continue")
    loop, holder, entry = _find_loop(b, ctx.process.parameters, data)
    if entry is None:
        raise InvalidArgument(f"{b}: no loop named {loop!r} has been started")
    if entry.get("Finished"):
        raise InvalidArgument(f"{b}: loop {loop!r} has already ended ({entry['State']})")
    states = _loop_states(b, ctx.process.parameters, holder)
    states[loop] = {**entry, "State": wanted}
    _set(b, ctx.process.parameters, holder, states)


def _loop_condition(name: str, states: tuple[str, ...]) -> Callable[[ActionContext, Any], bool]:
    def condition(ctx: ActionContext, parameter: Any) -> bool:
        entry = _find_loop(name, ctx.process.parameters, _params(name, parameter))[2]
        return entry is not None and entry["State"] in states

    condition.__name__ = condition.__qualname__ = name
    condition.__doc__ = f'``{name}``: ``{{"LoopName"}}`` is in state {" or ".join(states)}.'
    return condition


_LOOP_CONDITIONS = {
    "LoopIsNotCompletedAndBroken": ("Default", "Continue"),
    "LoopIsCompleted": ("Complete",),
    "LoopIsBroken": ("Break",),
    "LoopIsCompletedOrBroken": ("Complete", "Break"),
    "LoopIsDefault": ("Default",),
    "LoopIsNotDefault": ("Continue", "Break", "Complete"),
}

BUILTIN_ACTIONS: dict[str, ActionFunction] = {
    "SetParameter": set_parameter,
    "RemoveParameter": remove_parameter,
    "StartLoopFor": start_loop_for,
    "StartLoopForeach": start_loop_foreach,
    "StartLoopForeachFromParameter": start_loop_foreach_from_parameter,
    "SetLoopState": set_loop_state,
}
"""OptimaJet's built-in actions by name (an application's own action of a name wins)."""

BUILTIN_CONDITIONS: dict[str, ConditionFunction] = {"CheckParameter": check_parameter} | {
    name: _loop_condition(name, states) for name, states in _LOOP_CONDITIONS.items()
}
"""OptimaJet's built-in conditions by name; a loop never started is in none of the states."""
