"""Field types of the API's bodies and parameters: text every database can store.

PostgreSQL refuses NUL characters in text, and no database driver encodes a lone surrogate
(which a JSON ``\\ud800`` escape produces); such values are refused with a 422 problem
before they reach the engine.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from flowkeeper.steps.model import MAX_ID
from flowkeeper.storage.tables import NAME_LENGTH

MAX_STEPS_PER_REQUEST = 1000
MAX_TEXT = 100_000
NO_NUL = r"^[^\x00]*$"


def _storable(value: str) -> str:
    """Refuse text that no database stores: NUL characters and lone surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


def find_unstorable(value: Any, *, nul: bool = False) -> str | None:
    """Why ``value`` (decoded JSON) cannot be stored, or None: a string or key holding a lone
    surrogate (which no database encodes), or a NUL character when ``nul`` (text columns)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if nul and "\x00" in item:
                return f"text must not contain NUL characters: {item[:40]!r}"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"text must be valid Unicode (it holds a lone surrogate): {item[:40]!r}"
    return None


def _storable_json(value: Any) -> Any:
    reason = find_unstorable(value)
    if reason is not None:
        raise ValueError(reason)
    return value


Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_LENGTH, pattern=NO_NUL),
    AfterValidator(_storable),
]
"""A name, id or identity: 1 to 255 characters."""
Text = Annotated[
    str, StringConstraints(max_length=MAX_TEXT, pattern=NO_NUL), AfterValidator(_storable)
]
StepId = Annotated[int, Field(ge=1, le=MAX_ID)]
Parameters = Annotated[dict[str, Any], AfterValidator(_storable_json)]
"""Process parameters: any JSON values (text in them must be valid Unicode)."""
