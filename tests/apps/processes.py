"""Starting real ``flowkeeper worker`` processes for tests, as a deployment would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]


def start_worker(
    db_url: str, log: IO[str], *, workers: int, lease: float = 60.0, app: str | None = None
) -> subprocess.Popen[str]:
    """``python -m flowkeeper.cli worker`` on ``db_url`` in the repository's root, its output
    going to ``log`` (a file, so that a chatty worker never blocks on a full pipe)."""
    env = {
        **os.environ,
        "FLOWKEEPER_DATABASE_URL": db_url,
        "FLOWKEEPER_TEST_LEASE": str(lease),
    }
    command = [sys.executable, "-m", "flowkeeper.cli", "worker", "--workers", str(workers)]
    command += ["--app", app or "tests.apps.crash_app:engine"]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
