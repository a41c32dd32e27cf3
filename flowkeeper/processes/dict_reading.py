"""Typed reads of plain JSON/YAML data for :mod:`flowkeeper.processes.dict_format`.

Every wrong value is recorded with its path (``activities[2].name: expected a string``)
instead of stopping at the first, so that one :class:`~flowkeeper.errors.SchemeError` can
list them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from typing import TypeVar

from flowkeeper.processes.model import Attributes, Designer
from flowkeeper.processes.safe_xml import element_problem

__all__ = ["DictObject", "each"]

_E = TypeVar("_E", bound=StrEnum)
_T = TypeVar("_T")


class DictObject:
    """One JSON object at ``path``: typed reads, each wrong value recorded in ``errors``."""

    def __init__(self, data: object, path: str, errors: list[str]) -> None:
        self.path, self.errors = path, errors
        self.data: Mapping[object, object] = {}
        self.valid = isinstance(data, Mapping)  # if not, what it lacks is not said again
        if isinstance(data, Mapping):
            self.data = data
        else:
            self.fail(path or "scheme", "expected an object")
        self.read: set[str] = set()

    def at(self, key: str) -> str:
        """The path of ``key`` in this object."""
        return f"{self.path}.{key}" if self.path else key

    def fail(self, path: str, reason: str) -> None:
        """Record one problem at ``path``."""
        self.errors.append(f"{path}: {reason}")

    def get(self, key: str) -> object:
        """The raw value at ``key`` (``None`` when absent), marking the key as known."""
        self.read.add(key)
        return self.data.get(key)

    def typed(self, key: str, kind: type[_T], label: str) -> _T | None:
        """The value if it is a ``kind`` (a bool is no number), else ``None``."""
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
            return value
        self.fail(self.at(key), f"expected {label}")
        return None

    def text(self, key: str) -> str | None:
        """An optional string."""
        return self.typed(key, str, "a string")

    def string(self, key: str, default: str) -> str:
        """A string with a default."""
        value = self.typed(key, str, "a string")
        return default if value is None else value

    def required(self, key: str = "name") -> str:
        """A string that must be there (``""`` if not, which is a problem)."""
        value = self.typed(key, str, "a string")
        if value is None and self.data.get(key) is None and self.valid:
            self.fail(self.at(key), "missing")
        return value or ""

    def flag(self, key: str) -> bool | None:
        """An optional boolean."""
        return self.typed(key, bool, "true or false")

    def boolean(self, key: str, default: bool) -> bool:
        """A boolean with a default."""
        value = self.typed(key, bool, "true or false")
        return default if value is None else value

    def integer(self, key: str, default: int) -> int:
        """An integer with a default."""
        value = self.typed(key, int, "an integer")
        return default if value is None else value

    def number(self, key: str) -> float | None:
        """An optional finite number, as a float."""
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.at(key), "expected a number")
            return None
        if not math.isfinite(value):
            self.fail(self.at(key), "expected a finite number")
            return None
        return float(value)

    def choice(self, key: str, kind: type[_E], default: _E | None = None) -> _E:
        """An enum's value as OptimaJet spells it; required when there is no default."""
        value = self.get(key)
        if value is None and default is not None:
            return default
        if value is None:
            if self.valid:
                self.fail(self.at(key), "missing")
        elif not isinstance(value, str):
            self.fail(self.at(key), "expected a string")
        else:
            try:
                return kind(value)
            except ValueError:
                allowed = ", ".join(member.value for member in kind)
                self.fail(self.at(key), f"{value!r} is not one of {allowed}")
        return default if default is not None else next(iter(kind))

    def objects(self, key: str) -> Iterator[DictObject]:
        """The items of the list at ``key`` (none when absent)."""
        value = self.get(key)
        if value is None:
            return
        if not isinstance(value, list | tuple):
            self.fail(self.at(key), "expected a list")
            return
        for i, item in enumerate(value):
            yield DictObject(item, f"{self.at(key)}[{i}]", self.errors)

    def object(self, key: str) -> DictObject | None:
        """The object at ``key``, or ``None`` when absent."""
        value = self.get(key)
        return None if value is None else DictObject(value, self.at(key), self.errors)

    def attributes(self, key: str = "extra_attributes") -> Attributes:
        """A mapping of names to strings, as ``(name, value)`` pairs in order."""
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.fail(self.at(key), "expected an object of names and strings")
            return ()
        pairs = []
        for name, text in value.items():
            if isinstance(name, str) and isinstance(text, str):
                pairs.append((name, text))
            else:
                self.fail(f"{self.at(key)}.{name}", "expected a string")
        return tuple(pairs)

    def elements(self, key: str = "extra_elements") -> tuple[str, ...]:
        """A list of raw XML texts, each one well-formed element."""
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            self.fail(self.at(key), "expected a list of XML texts")
            return ()
        kept = []
        for i, text in enumerate(value):
            problem = element_problem(text) if isinstance(text, str) else "expected a string"
            if problem:
                self.fail(f"{self.at(key)}[{i}]", problem)
            else:
                kept.append(text)
        return tuple(kept)

    def designer(self, key: str = "designer") -> Designer | None:
        """The designer settings at ``key``, or ``None``."""
        found = self.object(key)
        if found is None:
            return None
        designer = Designer(
            found.number("x"),
            found.number("y"),
            found.text("color"),
            found.flag("hidden"),
            found.attributes(),
        )
        return found.done(designer)

    def done(self, value: _T) -> _T:
        """Report the keys nobody read, and return ``value``."""
        for key in self.data:
            if key not in self.read:
                self.fail(self.at(str(key)), "unknown key")
        return value


def each(parent: DictObject, key: str, read: Callable[[DictObject], _T]) -> tuple[_T, ...]:
    """Read every object of the list at ``key``, reporting the keys ``read`` left unread."""
    return tuple(item.done(read(item)) for item in parent.objects(key))
