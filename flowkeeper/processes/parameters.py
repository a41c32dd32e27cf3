"""Process parameters: the mapping actions see, system parameters, and type coercion.

A process's parameters are one mapping of names to JSON values. System parameters
(``ProcessId``, ``CurrentActivity``, …) are readable through it and never stored; writing one
is refused. Which parameters outlive a call is decided when the process is saved
(:func:`persistent_values`): everything except those the scheme declares ``Temporary``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flowkeeper.errors import InvalidArgument
from flowkeeper.processes.model import ParameterPurpose, Scheme

SYSTEM_PARAMETERS = frozenset(
    {
        "ProcessId",
        "SchemeCode",
        "SchemeVersion",
        "CurrentActivity",
        "CurrentState",
        "PreviousActivity",
        "PreviousState",
        "IdentityId",
        "CurrentCommand",
        "ExecutedActivity",
        "ExecutedTransition",
        "TenantId",
        "ParentProcessId",
        "RootProcessId",
    }
)
"""Names the engine fills in; readable by actions and expressions, never written by them."""


class ProcessParameters(MutableMapping[str, Any]):
    """The parameters of a process during one call: stored, temporary and system ones.

    >>> params = ProcessParameters({"Amount": 120}, lambda: {"ProcessId": "p1"})
    >>> params["Amount"], params["ProcessId"]
    (120, 'p1')
    >>> params["ProcessId"] = "p2"
    Traceback (most recent call last):
    ...
    flowkeeper.errors.InvalidArgument: parameter 'ProcessId' is a system parameter and \
cannot be set
    """

    __slots__ = ("_system", "_values")

    def __init__(self, values: Mapping[str, Any], system: Callable[[], Mapping[str, Any]]) -> None:
        self._values = dict(values)
        self._system = system

    def __getitem__(self, name: str) -> Any:
        if name in SYSTEM_PARAMETERS:
            return self._system().get(name)
        return self._values[name]

    def __setitem__(self, name: str, value: Any) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"parameter names must be non-empty strings, not {name!r}")
        if name in SYSTEM_PARAMETERS:
            raise InvalidArgument(f"parameter {name!r} is a system parameter and cannot be set")
        check_json_value(name, value)
        self._values[name] = value

    def __delitem__(self, name: str) -> None:
        if name in SYSTEM_PARAMETERS:
            raise InvalidArgument(f"parameter {name!r} is a system parameter and cannot be removed")
        del self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in SYSTEM_PARAMETERS or name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ProcessParameters({self._values!r})"

    def stored(self) -> dict[str, Any]:
        """A copy of the non-system parameters."""
        return dict(self._values)

    def replace_all(self, values: dict[str, Any]) -> None:
        """Go back to ``values`` (a copy taken with :meth:`stored`)."""
        self._values = dict(values)


def persistent_values(scheme: Scheme, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters to store: all but those the scheme declares ``Temporary``."""
    return {
        name: value
        for name, value in values.items()
        if (declared := scheme.parameter(name)) is None
        or declared.purpose is not ParameterPurpose.TEMPORARY
    }


def check_json_value(name: str, value: Any) -> None:
    """Raise :class:`InvalidArgument` unless ``value`` can be stored as JSON."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"parameter {name!r} holds text with a lone surrogate, which cannot be stored as "
            "UTF-8; decode it properly first"
        ) from None
    except (TypeError, ValueError) as error:
        raise InvalidArgument(
            f"parameter {name!r} must be a JSON value (str, int, float, bool, None, list, "
            f"dict), not {type(value).__name__}: {error}"
        ) from None


_INTEGER = {"int", "int16", "int32", "int64", "integer", "long", "short", "byte", "uint32"}
_FLOAT = {"decimal", "double", "single", "float", "number", "real"}
_BOOL = {"bool", "boolean"}
_STRING = {"string", "str", "text", "guid", "char"}
_DATETIME = {"datetime", "date", "datetimeoffset"}


def coerce(name: str, type_name: str, value: Any) -> Any:
    """``value`` converted to the declared parameter type (.NET names such as ``Int32``,
    ``System.Decimal``, ``Boolean`` or Python ones); unknown types pass values through.

    >>> coerce("Sum", "Decimal", "12.5"), coerce("Days", "Int32", "3")
    (12.5, 3)
    >>> coerce("Ok", "Boolean", "true")
    True
    """
    if value is None:
        return None
    kind = type_name.rsplit(".", 1)[-1].strip().lower().removesuffix("?")
    try:
        if kind in _STRING:
            return value if isinstance(value, str) else _to_text(value)
        if kind in _INTEGER:
            return _to_int(value)
        if kind in _FLOAT:
            return _to_float(value)
        if kind in _BOOL:
            return _to_bool(value)
        if kind in _DATETIME:
            return _to_datetime_text(value)
    except (ValueError, TypeError, InvalidOperation):
        raise InvalidArgument(
            f"parameter {name!r} must be of type {type_name}; {value!r} cannot be converted"
        ) from None
    return value


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    raise TypeError


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        return int(value)
    if isinstance(value, str):
        number = Decimal(value.strip())
        if number != number.to_integral_value():
            raise ValueError
        return int(number)
    raise TypeError


def _to_float(value: Any) -> float | int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, (int, float)):
        result: float | int = value
    elif isinstance(value, str):
        result = float(Decimal(value.strip()))
    else:
        raise TypeError
    if isinstance(result, float) and not math.isfinite(result):
        raise ValueError
    return result


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ValueError


def _to_datetime_text(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
    else:
        raise TypeError
    return moment.isoformat()
