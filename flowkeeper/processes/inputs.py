"""Parameters given by callers: checked, converted to their declared types, then applied.

Every problem is found before anything is applied, and reported at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowkeeper.errors import InvalidArgument, InvalidCommandParameters
from flowkeeper.processes.model import Scheme
from flowkeeper.processes.parameters import (
    SYSTEM_PARAMETERS,
    ProcessParameters,
    check_json_value,
    coerce,
)


def apply_parameters(
    scheme: Scheme,
    given: Mapping[str, Any] | None,
    target: ProcessParameters,
    *,
    initial_values: bool,
) -> None:
    """Set ``given`` on ``target``, each converted to its declared type; with
    ``initial_values`` first set declared parameters that have an initial value."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    if initial_values:
        for declared in scheme.parameters:
            if declared.initial_value is not None and declared.name not in SYSTEM_PARAMETERS:
                _convert(declared.name, declared.initial_value, scheme, values, problems)
    for name, value in _mapping(given, "parameters").items():
        if name in SYSTEM_PARAMETERS:
            problems.append(f"{name!r} is a system parameter and cannot be set")
            continue
        _convert(name, value, scheme, values, problems)
    if problems:
        raise InvalidArgument("; ".join(problems))
    for name, value in values.items():
        target[name] = value


def apply_command_inputs(
    scheme: Scheme,
    command: str,
    given: Mapping[str, Any] | None,
    target: ProcessParameters,
) -> None:
    """Fill the process parameters a command's input parameters name.

    Inputs are passed by their ``Name``; missing ones take their ``DefaultValue``; required
    ones must be given; names the command does not declare are refused.
    """
    declared = scheme.command(command)
    inputs = declared.input_parameters if declared is not None else ()
    supplied = _mapping(given, "parameters")
    names = {i.name for i in inputs}
    problems = [
        f"command {command!r} has no input parameter {name!r}"
        + (f" (it takes {', '.join(sorted(map(repr, names)))})" if names else " (it takes none)")
        for name in supplied
        if name not in names
    ]
    values: dict[str, Any] = {}
    for item in inputs:
        if item.parameter in SYSTEM_PARAMETERS:
            problems.append(f"input {item.name!r} fills the system parameter {item.parameter!r}")
            continue
        if item.name in supplied and supplied[item.name] is not None:
            _convert(item.parameter, supplied[item.name], scheme, values, problems, item.name)
        elif item.required:
            problems.append(f"command {command!r} requires the input parameter {item.name!r}")
        elif item.default is not None:
            declared_type = scheme.parameter(item.parameter)
            is_text = declared_type is None or declared_type.type.lower().endswith("string")
            if item.default != "" or is_text:
                _convert(item.parameter, item.default, scheme, values, problems, item.name)
    if problems:
        raise InvalidCommandParameters("; ".join(problems))
    for name, value in values.items():
        target[name] = value


def _convert(
    name: str,
    value: Any,
    scheme: Scheme,
    values: dict[str, Any],
    problems: list[str],
    given_as: str | None = None,
) -> None:
    declared = scheme.parameter(name)
    try:
        converted = coerce(name, declared.type, value) if declared is not None else value
        check_json_value(name, converted)
    except InvalidArgument as error:
        label = f"input {given_as!r}: " if given_as is not None and given_as != name else ""
        problems.append(f"{label}{error}")
        return
    values[name] = converted


def _mapping(given: Mapping[str, Any] | None, what: str) -> Mapping[str, Any]:
    if given is None:
        return {}
    if not isinstance(given, Mapping) or not all(isinstance(k, str) and k for k in given):
        raise InvalidArgument(f"{what} must be a mapping of non-empty names to values")
    return given
