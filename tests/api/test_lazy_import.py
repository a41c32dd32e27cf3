"""The core works without the server extra; the API says how to install it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

import flowkeeper as fk
from flowkeeper import api


def test_importing_flowkeeper_and_the_key_store_imports_no_web_framework() -> None:
    code = (
        "import sys, flowkeeper, flowkeeper.api, flowkeeper.api.keys, flowkeeper.cli\n"
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_without_the_server_extra_create_app_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name in ("fastapi", "uvicorn") else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(fk.ConfigurationError, match=r"pip install 'flowkeeper\[server\]'"):
        api.create_app(fk.Engine("sqlite://"))
    with pytest.raises(fk.ConfigurationError, match="fastapi and uvicorn"):
        api.require_server_extra("fastapi", "uvicorn")
