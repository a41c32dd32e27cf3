"""Which function implements which step name, and how its failures are retried."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from flowkeeper.errors import InvalidArgument, StepAlreadyRegistered
from flowkeeper.steps.model import DEFAULT_RETRY, Retry, check_text

Implementation = Callable[..., Any]
F = TypeVar("F", bound=Implementation)


@dataclass(frozen=True, slots=True)
class Registration:
    function: Implementation
    retry: Retry
    is_async: bool


class StepRegistry:
    """Step name → implementation. One implementation may serve several names."""

    def __init__(self) -> None:
        self._by_name: dict[str, Registration] = {}

    def register(
        self, names: tuple[str, ...], function: Implementation, retry: Retry | None = None
    ) -> None:
        if not names:
            raise InvalidArgument("give at least one step name: @engine.step('v1/orders/fetch')")
        if not callable(function):
            raise InvalidArgument(f"a step implementation must be callable, not {function!r}")
        if retry is not None and not isinstance(retry, Retry):
            raise InvalidArgument(f"retry must be an fk.Retry, not {retry!r}")
        for name in names:
            check_text(name, "step name", required=True)
            if name in self._by_name:
                existing = self._by_name[name].function
                raise StepAlreadyRegistered(
                    f"step name {name!r} is already implemented by "
                    f"{existing.__module__}.{existing.__qualname__}"
                )
        registration = Registration(
            function, retry or DEFAULT_RETRY, inspect.iscoroutinefunction(function)
        )
        for name in names:
            self._by_name[name] = registration

    def decorator(self, names: tuple[str, ...], retry: Retry | None) -> Callable[[F], F]:
        def decorate(function: F) -> F:
            self.register(names, function, retry)
            return function

        return decorate

    def get(self, name: str) -> Registration | None:
        return self._by_name.get(name)

    def names(self) -> Iterator[str]:
        return iter(sorted(self._by_name))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name
