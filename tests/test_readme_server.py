"""The README's "Run the server" walkthrough runs as written against a real ``flowkeeper serve``.

Its ``sh`` blocks run in order in one ``sh``, in a fresh directory that holds the
repository's ``examples/`` (as the repository root does), with the installed ``flowkeeper`` on
the ``PATH``. The one substitution is the one the README offers: another free port for 8080.
Each ``text`` block that follows an ``sh`` block is what that block printed (timestamps aside).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HEADING = "## Run the server"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
MARKER = "@@ block {} @@"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{HEADING}\n")
    end = text.index("\n## ", start + len(HEADING) + 2)
    return text[start:end]


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(section())]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def normalise(text: str) -> str:
    return TIMESTAMP.sub("<timestamp>", text).strip()


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_section_comes_before_the_databases_and_offers_the_port() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.index(HEADING) < text.index("## PostgreSQL and MySQL/MariaDB")
    assert "instead of 8080" in section()
    found = blocks()
    assert [language for language, _ in found].count("sh") >= 4
    assert "examples/VacationRequest.xml" in section()


def test_the_example_scheme_is_the_compat_one() -> None:
    example = ROOT / "examples" / "VacationRequest.xml"
    compat = ROOT / "tests" / "processes" / "compat" / "VacationRequest.xml"
    assert example.read_bytes() == compat.read_bytes()


@pytest.mark.slow
def test_the_walkthrough_runs_and_prints_what_it_shows(tmp_path: Path) -> None:
    found = blocks()
    port = str(free_port())
    shell = [i for i, (language, _) in enumerate(found) if language == "sh"]
    script = []
    for number, index in enumerate(shell):
        script.append(f"printf '\\n{MARKER.format(number)}\\n'")
        script.append(found[index][1].replace("8080", port))
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKEEPER_")}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    process = subprocess.Popen(
        ["sh", "-e", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=180)
        deadline = time.monotonic() + 60
        while group_alive(process.pid):  # the server stopping gracefully after `kill`
            assert time.monotonic() < deadline, "the server did not stop"
            time.sleep(0.1)
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
    log = (tmp_path / "server.log").read_text() if (tmp_path / "server.log").exists() else ""
    assert process.returncode == 0, f"{out}\n{err}\n{log}"
    assert "Traceback" not in log, log

    printed = re.split(r"\n?@@ block (\d+) @@\n", out)
    outputs = dict(zip((int(n) for n in printed[1::2]), printed[2::2], strict=True))
    assert sorted(outputs) == list(range(len(shell)))
    assert "fk_" not in outputs[0]  # the key went to $KEY only
    shown = 0
    for number, index in enumerate(shell):
        if index + 1 < len(found) and found[index + 1][0] == "text":
            assert normalise(outputs[number]) == normalise(found[index + 1][1]), (
                f"sh block {number} printed otherwise"
            )
            shown += 1
    assert shown >= 3
