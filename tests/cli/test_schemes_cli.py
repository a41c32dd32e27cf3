"""``flowkeeper schemes``: import, export, list and show, on every database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import flowkeeper as fk
from tests.cli import (
    VACATION,
    assert_error,
    compat_files,
    invoke,
    run_json,
    run_ok,
)


def saved_names(db_url: str) -> list[str]:
    return [info["name"] for info in run_json("schemes", "list", "-d", db_url)]


def broken_vacation(tmp_path: Path) -> tuple[Path, list[str]]:
    """VacationRequest.xml with two problems, and the problems ``from_xml`` reports."""
    text = VACATION.read_text(encoding="utf-8")
    text = text.replace('To="RequestApproved"', 'To="Nowhere"')
    text = text.replace('NameRef="Paid"', 'NameRef="Pay"')
    path = tmp_path / "Broken.xml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(fk.SchemeError) as raised:
        fk.Scheme.from_xml(str(path))
    assert len(raised.value.errors) == 2
    return path, raised.value.errors


# -- import ------------------------------------------------------------------------------------


def test_import_every_compat_file(engine: fk.Engine, db_url: str) -> None:
    files = compat_files()
    assert len(files) >= 17

    imported = run_json("schemes", "import", *map(str, files), "-d", db_url)

    assert [item["file"] for item in imported] == [str(f) for f in files]
    names = [fk.Scheme.from_xml(str(f)).name for f in files]
    assert [item["name"] for item in imported] == names
    # A name given again gets the next version (three samples are all called SimpleWF).
    seen: dict[str, int] = {}
    for item, path in zip(imported, files, strict=True):
        seen[item["name"]] = seen.get(item["name"], 0) + 1
        assert item["version"] == seen[item["name"]]
        stored = engine.schemes.get(item["name"], item["version"])
        assert stored == fk.Scheme.from_xml(str(path))
    assert seen["SimpleWF"] == 3
    assert saved_names(db_url) == sorted(seen)


def test_import_prints_each_name_and_version(db_url: str) -> None:
    result = run_ok("schemes", "import", str(VACATION), str(VACATION), "-d", db_url)

    lines = result.stdout.splitlines()
    assert lines == [
        f"Imported SimpleWF version 1 from {VACATION}",
        f"Imported SimpleWF version 2 from {VACATION}",
    ]


def test_a_bad_file_lists_every_problem_and_nothing_is_saved(
    engine: fk.Engine, db_url: str, tmp_path: Path
) -> None:
    broken, problems = broken_vacation(tmp_path)
    files = [str(compat_files()[0]), str(broken), str(VACATION)]

    result = invoke("schemes", "import", *files, "-d", db_url)

    assert_error(result, "1 of 3 files is invalid", "no scheme was imported", str(broken))
    assert "2 problems" in result.stderr
    for problem in problems:
        assert f"- {problem}" in result.stderr
    assert str(VACATION) not in result.stderr  # only the bad file is named
    assert engine.schemes.list() == []


def test_every_bad_file_is_reported(engine: fk.Engine, db_url: str, tmp_path: Path) -> None:
    broken, problems = broken_vacation(tmp_path)
    not_json = tmp_path / "not.json"
    not_json.write_text("{ nope", encoding="utf-8")
    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2]", encoding="utf-8")
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello", encoding="utf-8")
    missing = tmp_path / "missing.xml"
    bad_dict = tmp_path / "bad.json"
    bad_dict.write_text(json.dumps({"name": "X", "activities": "many"}), encoding="utf-8")
    files = [broken, not_json, a_list, unknown, missing, bad_dict, VACATION]

    result = invoke("schemes", "import", *map(str, files), "-d", db_url)

    assert_error(result, "6 of 7 files are invalid")
    expected = {
        broken: problems,
        not_json: ["not valid JSON", "line 1 column 3"],
        a_list: ["the JSON is list, not an object"],
        unknown: ["cannot tell whether it is XML or JSON", "--format"],
        missing: ["cannot read the file", "No such file"],
        bad_dict: ["activities"],
    }
    for path, fragments in expected.items():
        assert f"  {path}: " in result.stderr
        for fragment in fragments:
            assert fragment in result.stderr
    assert engine.schemes.list() == []


def test_format_auto_sniffs_and_format_forces(
    engine: fk.Engine, db_url: str, tmp_path: Path
) -> None:
    as_json = tmp_path / "vacation.scheme"
    as_json.write_text(json.dumps(fk.Scheme.from_xml(str(VACATION)).to_dict()), encoding="utf-8")
    as_xml = tmp_path / "vacation.txt"
    as_xml.write_bytes(b"\xef\xbb\xbf  \n" + VACATION.read_bytes())

    run_ok("schemes", "import", str(as_json), str(as_xml), "-d", db_url)
    assert_error(
        invoke("schemes", "import", "--format", "xml", str(as_json), "-d", db_url), str(as_json)
    )
    assert_error(
        invoke("schemes", "import", "-f", "json", str(VACATION), "-d", db_url), "not valid JSON"
    )

    assert [i.version for i in engine.schemes.versions("SimpleWF")] == [1, 2]
    assert engine.schemes.get("SimpleWF", 1) == engine.schemes.get("SimpleWF", 2)


def test_import_needs_a_file(db_url: str) -> None:
    result = invoke("schemes", "import", "-d", db_url)
    assert result.exit_code == 2  # a usage error, reported by Typer


# -- export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", compat_files(), ids=lambda p: p.stem)
def test_export_xml_imports_back_equal(
    engine: fk.Engine, db_url: str, tmp_path: Path, path: Path
) -> None:
    name = run_json("schemes", "import", str(path), "-d", db_url)[0]["name"]

    exported = run_ok("schemes", "export", name, "-d", db_url).stdout
    assert exported.startswith("<Process ")
    copy = tmp_path / "copy.xml"
    copy.write_text(exported, encoding="utf-8")
    again = run_json("schemes", "import", str(copy), "-d", db_url)

    assert again == [{"file": str(copy), "name": name, "version": 2}]
    assert engine.schemes.get(name, 2) == engine.schemes.get(name, 1)
    assert engine.schemes.get(name, 2) == fk.Scheme.from_xml(str(path))


def test_export_json_and_output_files(engine: fk.Engine, db_url: str, tmp_path: Path) -> None:
    run_ok("schemes", "import", str(VACATION), "-d", db_url)
    original = engine.schemes.get("SimpleWF")

    as_json = json.loads(run_ok("schemes", "export", "SimpleWF", "--json", "-d", db_url).stdout)
    assert as_json == original.to_dict()
    same = run_ok("schemes", "export", "SimpleWF", "--format", "json", "-d", db_url).stdout
    assert json.loads(same) == as_json

    by_suffix = tmp_path / "out.json"
    result = run_ok("schemes", "export", "SimpleWF", "-o", str(by_suffix), "-d", db_url)
    assert result.stdout == ""
    assert f"Wrote scheme 'SimpleWF' version 1 as JSON to {by_suffix}" in result.stderr
    assert json.loads(by_suffix.read_text(encoding="utf-8")) == as_json

    forced = tmp_path / "out.json.txt"
    run_ok("schemes", "export", "SimpleWF", "-f", "xml", "-o", str(forced), "-d", db_url)
    assert fk.Scheme.from_xml(str(forced)) == original

    run_ok("schemes", "import", str(by_suffix), str(forced), "-d", db_url)
    assert [i.version for i in engine.schemes.versions("SimpleWF")] == [1, 2, 3]
    assert engine.schemes.get("SimpleWF", 2) == original
    assert engine.schemes.get("SimpleWF", 3) == original


def test_export_a_version(engine: fk.Engine, db_url: str) -> None:
    first = compat_files()[0]
    # Two different schemes under one name: version 1 and version 2 differ.
    renamed = fk.Scheme.from_xml(str(first))
    engine.schemes.save(fk.Scheme.from_xml(str(VACATION)))
    vacation_v2 = fk.Scheme.from_dict({**renamed.to_dict(), "name": "SimpleWF"})
    engine.schemes.save(vacation_v2)

    v1 = run_ok("schemes", "export", "SimpleWF", "--version", "1", "-d", db_url).stdout
    newest = run_ok("schemes", "export", "SimpleWF", "-d", db_url).stdout

    assert fk.Scheme.from_xml(v1) == fk.Scheme.from_xml(str(VACATION))
    assert fk.Scheme.from_xml(newest) == vacation_v2


def test_export_errors(db_url: str, tmp_path: Path) -> None:
    assert_error(invoke("schemes", "export", "Nope", "-d", db_url), "SchemeNotFound", "'Nope'")
    run_ok("schemes", "import", str(VACATION), "-d", db_url)
    assert_error(
        invoke("schemes", "export", "SimpleWF", "--version", "7", "-d", db_url),
        "SchemeNotFound",
        "no version 7",
    )
    assert_error(
        invoke("schemes", "export", "SimpleWF", "--json", "-f", "xml", "-d", db_url),
        "--json and --format xml",
    )
    assert_error(
        invoke(
            "schemes", "export", "SimpleWF", "-o", str(tmp_path / "no" / "dir.xml"), "-d", db_url
        ),
        "cannot write",
    )


# -- list and show -----------------------------------------------------------------------------


def test_list(db_url: str) -> None:
    empty = run_ok("schemes", "list", "-d", db_url)
    assert "No schemes saved yet" in empty.stdout
    assert run_json("schemes", "list", "-d", db_url) == []

    run_ok("schemes", "import", str(VACATION), str(VACATION), str(compat_files()[0]), "-d", db_url)
    listed = run_json("schemes", "list", "-d", db_url)
    shown = run_ok("schemes", "list", "-d", db_url).stdout

    first = fk.Scheme.from_xml(str(compat_files()[0])).name
    assert [(i["name"], i["version"], i["obsolete"]) for i in listed] == sorted(
        [(first, 1, False), ("SimpleWF", 2, False)]
    )
    assert all(i["created_at"] and i["tenant_id"] is None for i in listed)
    assert "2 schemes" in shown
    assert "newest version" in shown
    assert "SimpleWF" in shown
    assert listed[0]["created_at"][:19] in shown.replace("Z", "")


def test_show_summarizes_the_scheme(db_url: str) -> None:
    run_ok("schemes", "import", str(VACATION), "-d", db_url)

    shown = run_ok("schemes", "show", "SimpleWF", "-d", db_url).stdout

    assert "Scheme SimpleWF, version 1 (newest), saved " in shown
    lines = [" ".join(line.split()) for line in shown.splitlines()]
    for expected in [
        "initial VacationRequestCreated VacationRequestCreated",
        "final RequestApproved RequestApproved",
        "ManagerSigning --Command[Approve]--> BigBossSigning",
        "ManagerSigning_BigBossSigning_1 · Direct · if @Sum > 100 · allow Manager",
        "ManagerSigning_Approved_1 · Direct · if otherwise · allow Manager",
        "ManagerSigning --Timer[SendToBigBoss]--> BigBossSigning",
        "ManagerSigning_BigBossSigning_2 · NotSpecified",
        "StartSigning Start signing Comment",
        "BigBoss CheckRole Big Boss",
        "SendToBigBoss Interval 10minutes no",
        "Comment String Temporary",
    ]:
        assert expected in lines, (expected, shown)
    for title in ["Activities", "Transitions", "Commands", "Actors", "Timers", "Parameters"]:
        assert title in lines


def test_show_auto_transitions_and_action_conditions(db_url: str) -> None:
    path = next(p for p in compat_files() if p.stem == "ExpressionConditionOtherwise")
    run_ok("schemes", "import", str(path), "-d", db_url)

    shown = run_ok("schemes", "show", "ExpressionConditionOtherwise", "-d", db_url).stdout

    assert "BeforeBranches --Auto--> AfterCondition" in shown
    assert "CheckParameter(" in shown
    assert "Commands" not in shown  # empty parts are left out


def test_show_json_and_versions(engine: fk.Engine, db_url: str) -> None:
    run_ok("schemes", "import", str(VACATION), str(VACATION), "-d", db_url)

    assert run_json("schemes", "show", "SimpleWF", "-d", db_url) == (
        engine.schemes.get("SimpleWF").to_dict()
    )
    old = run_ok("schemes", "show", "SimpleWF", "--version", "1", "-d", db_url).stdout
    assert "version 1 (obsolete)" in old
    assert_error(invoke("schemes", "show", "Nope", "-d", db_url), "SchemeNotFound", "'Nope'")
    assert_error(
        invoke("schemes", "show", "SimpleWF", "--version", "3", "-d", db_url), "no version 3"
    )


def test_help_documents_every_command() -> None:
    for command in ["import", "export", "list", "show"]:
        result = run_ok("schemes", command, "--help")
        assert "--database" in result.stdout
        assert "--json" in result.stdout
