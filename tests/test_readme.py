"""The README's Python examples run as written, and print what it says they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]


def test_readme_examples_run_and_print_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    found = blocks()
    python = [i for i, (language, _) in enumerate(found) if language == "python"]
    assert len(python) >= 4
    for index in python:
        code = found[index][1]
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(compile(code, f"README.md block {index}", "exec"), {"__name__": "readme"})
        following = found[index + 1] if index + 1 < len(found) else None
        if following is not None and following[0] == "text":
            assert output.getvalue() == following[1], f"block {index} printed otherwise"


def test_readme_has_exactly_two_set_up_and_go_commands() -> None:
    commands = [body.strip() for language, body in blocks() if language == "sh"][:2]
    assert commands[0].startswith("python3 -m venv .venv")
    assert "flowkeeper demo" in commands[0]
    assert commands[1] == "./scripts/test"
    ci = (README.parent / ".ci" / "run").read_text()
    assert "scripts/test" in ci
