"""Tests of the ``flowkeeper schemes`` and ``flowkeeper processes`` commands, and their helpers.

Commands run in-process through Typer's ``CliRunner`` with ``catch_exceptions=False``, so an
error that escaped as a traceback fails the test instead of passing as exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from flowkeeper.cli import app

COMPAT = Path(__file__).resolve().parents[1] / "processes" / "compat"
"""OptimaJet's sample schemes."""

VACATION = COMPAT / "VacationRequest.xml"
"""The vacation request sample; its process name is ``SimpleWF``."""


def compat_files() -> list[Path]:
    """Every sample scheme file, by name."""
    return sorted(COMPAT.glob("*.xml"))


def invoke(*args: str) -> Result:
    """Run the CLI in-process; tracebacks propagate instead of becoming exit codes."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def run_ok(*args: str) -> Result:
    """Run a command that must succeed."""
    result = invoke(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def run_json(*args: str) -> Any:
    """Run a command with ``--json``; it must succeed and print only JSON on stdout."""
    return json.loads(run_ok(*args, "--json").stdout)


def assert_error(result: Result, *fragments: str) -> None:
    """Exit code 1, ``error: …`` on stderr with each fragment, nothing on stdout."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
