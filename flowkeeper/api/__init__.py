"""Flowkeeper's HTTP API (FastAPI): ``create_app(engine)`` and ``flowkeeper serve``.

It needs the ``server`` extra (``pip install 'flowkeeper[server]'``); the rest of Flowkeeper
works without it, and importing this package does not import FastAPI.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from flowkeeper.errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from flowkeeper.engine import Engine

__all__ = ["DEFAULT_THREADS", "create_app", "require_server_extra"]

DEFAULT_THREADS = 40
"""Engine calls an app runs at once (``create_app(threads=…)``, ``serve --threads``): as many
as anyio's thread pool would run. Each holds a database connection while it waits for the
database (or a tenant's callback service); more requests wait their turn."""


def require_server_extra(*modules: str) -> None:
    """Raise :class:`flowkeeper.ConfigurationError` unless the server extra is installed."""
    missing = [m for m in modules or ("fastapi",) if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigurationError(
            f"the Flowkeeper server needs {' and '.join(missing)}, which is not installed; "
            "install it with: pip install 'flowkeeper[server]'"
        )


def create_app(engine: Engine, **options: Any) -> FastAPI:
    """The HTTP API over ``engine`` as a FastAPI app; see :func:`flowkeeper.api.app.create_app`."""
    require_server_extra("fastapi")
    from flowkeeper.api.app import create_app as build

    return build(engine, **options)
