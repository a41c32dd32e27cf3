"""What a callback registration is: the :class:`Callback` record, its limits, the checks of
what is registered (URL, token, names, timeout) and its rows in ``fk_callbacks``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flowkeeper.errors import FlowkeeperError, InvalidArgument
from flowkeeper.processes.callbacks.addresses import url_to_show
from flowkeeper.steps.model import check_text
from flowkeeper.storage.tables import NAME_LENGTH

DEFAULT_TIMEOUT_MS = 5000
MAX_TIMEOUT_MS = 60_000
"""A callback runs while its process's row is locked: longer waits are refused."""
MAX_URL_LENGTH = 2000
MAX_NAMES = 1000
"""Most names of one kind a callback may serve."""
KINDS = ("action", "condition", "rule")


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
        return url_to_show(self.url)

    def names(self, kind: str) -> tuple[str, ...]:
        """The names of ``kind`` (``action``, ``condition`` or ``rule``) it serves."""
        return {"action": self.actions, "condition": self.conditions, "rule": self.rules}[kind]


# -- validation and rows ---------------------------------------------------------------------------


def checked_url(url: object) -> str:
    """``url`` if it may be registered (http(s), ASCII, a host, no credentials);
    ``InvalidArgument`` otherwise."""
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
            f"url {url_to_show(url)} has credentials (user:password@ before the host), which "
            "would be stored with it and could be shown with it; remove them and send the "
            "secret as the token instead (Authorization: Bearer <token>)"
        )
    return url


def checked_token(token: object) -> str | None:
    """``token`` (None for none or ``""``) if it is visible ASCII; ``InvalidArgument``
    otherwise."""
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


def checked_names(names: Iterable[str], what: str) -> tuple[str, ...]:
    """The ``names`` listed as ``what``, without repeats; ``InvalidArgument`` for a bad one."""
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise InvalidArgument(f"{what} must be a list of names, not {names!r}")
    found = list(names)
    if len(found) > MAX_NAMES:
        raise InvalidArgument(f"{what} may list at most {MAX_NAMES} names")
    for name in found:
        check_text(name, f"a name in {what}", required=True, error=InvalidArgument)
    return tuple(dict.fromkeys(found))


def checked_timeout(timeout_ms: object) -> int:
    """``timeout_ms`` if it is an integer from 1 to ``MAX_TIMEOUT_MS``; ``InvalidArgument``
    otherwise."""
    if (
        isinstance(timeout_ms, bool)
        or not isinstance(timeout_ms, int)
        or not 1 <= timeout_ms <= MAX_TIMEOUT_MS
    ):
        raise InvalidArgument(
            f"timeout_ms must be an integer from 1 to {MAX_TIMEOUT_MS}, not {timeout_ms!r}"
        )
    return timeout_ms


def callback_row(callback: Callback) -> dict[str, Any]:
    """The ``fk_callbacks`` row of ``callback``."""
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


def callback_from_row(row: Any) -> Callback:
    """The callback a ``fk_callbacks`` row holds."""
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
