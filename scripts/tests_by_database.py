"""Print how many tests passed, failed and were skipped on each database (from JUnit XML)."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter


def main(path: str) -> None:
    results: Counter[tuple[str, str]] = Counter()
    for case in ET.parse(path).iter("testcase"):
        found = re.search(r"\[(sqlite|postgresql|mariadb)\b", case.get("name", ""))
        database = found.group(1) if found else "no database"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        results[(database, outcome)] += 1
    for database in ("sqlite", "postgresql", "mariadb", "no database"):
        counts = {o: results[(database, o)] for o in ("passed", "failed", "skipped")}
        if any(counts.values()):
            print(f"{database:>12}: {counts['passed']} passed, {counts['failed']} failed, "
                  f"{counts['skipped']} skipped")


if __name__ == "__main__":
    main(sys.argv[1])
