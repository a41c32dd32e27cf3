"""``flowkeeper schemes``: import, export, list and show process schemes.

Schemes are read and written in two formats: OptimaJet Workflow Engine's XML (the interchange
format, ``fk.Scheme.from_xml``/``to_xml``) and Flowkeeper's JSON shape (``fk.Scheme.from_dict``/
``to_dict``). Every saved scheme is a new version; ``engine.schemes`` keeps them all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from flowkeeper.cli.common import (
    DatabaseOption,
    JsonOption,
    console,
    errors,
    fail,
    print_json,
    reports_errors,
    utc_text,
)
from flowkeeper.engine import Engine
from flowkeeper.errors import InvalidArgument, SchemeError
from flowkeeper.processes.model import (
    ActionRef,
    Concatenation,
    Condition,
    ConditionType,
    RestrictionType,
    Scheme,
    Transition,
    TriggerType,
)
from flowkeeper.processes.records import SchemeInfo
from flowkeeper.storage.database import translate_connection_errors

schemes_app = typer.Typer(
    name="schemes",
    help="Process schemes: import (XML or JSON), export, list and show their versions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class ImportFormat(StrEnum):
    """The format of a scheme file to import."""

    auto = "auto"
    xml = "xml"
    json = "json"


class ExportFormat(StrEnum):
    """The format a scheme is exported in."""

    xml = "xml"
    json = "json"


VersionOption = Annotated[
    int | None,
    typer.Option("--version", min=1, help="A saved version (default: the newest)."),
]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The scheme's name (code).")]


# -- import ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    """One file of an import: its scheme, or every problem that keeps it from being saved."""

    file: Path
    scheme: Scheme | None
    problems: tuple[str, ...] = ()


def _format_of(path: Path, data: bytes, chosen: ImportFormat) -> ExportFormat | None:
    """The format ``chosen``, else the one the suffix names, else the one the data starts as."""
    if chosen is not ImportFormat.auto:
        return ExportFormat(chosen.value)
    suffix = path.suffix.lower()
    if suffix in (".xml", ".json"):
        return ExportFormat(suffix[1:])
    start = data.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    return {b"<": ExportFormat.xml, b"{": ExportFormat.json}.get(start)


def _read_scheme(path: Path, chosen: ImportFormat) -> _Read:
    """Read and validate one file; a problem with the file is returned, never raised."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return _Read(path, None, (f"cannot read the file: {error.strerror or error}",))
    found = _format_of(path, data, chosen)
    if found is None:
        return _Read(
            path,
            None,
            (
                "cannot tell whether it is XML or JSON (it starts with neither '<' nor '{'); "
                "give --format xml or --format json",
            ),
        )
    try:
        if found is ExportFormat.xml:
            return _Read(path, Scheme.from_xml(path))
        try:
            parsed = json.loads(data.decode("utf-8-sig"))
        except UnicodeDecodeError as error:
            return _Read(path, None, (f"not UTF-8 text: {error.reason} at byte {error.start}",))
        except json.JSONDecodeError as error:
            return _Read(
                path,
                None,
                (f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",),
            )
        if not isinstance(parsed, dict):
            return _Read(path, None, (f"the JSON is {type(parsed).__name__}, not an object",))
        return _Read(path, Scheme.from_dict(parsed))
    except SchemeError as error:
        return _Read(path, None, tuple(error.errors))


def _problems_text(bad: list[_Read], total: int) -> str:
    """Every problem of every bad file, grouped by file."""
    count = f"{len(bad)} of {total} file{'s' if total != 1 else ''}"
    verb = "is" if len(bad) == 1 else "are"
    lines = [f"{count} {verb} invalid, so no scheme was imported:"]
    for read in bad:
        n = len(read.problems)
        lines.append(f"  {read.file}: {n} problem{'s' if n != 1 else ''}")
        lines.extend(f"    - {problem}" for problem in read.problems)
    return "\n".join(lines)


@schemes_app.command("import")
@reports_errors
def import_schemes(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE", help="Scheme files (.xml or .json).", show_default=False),
    ],
    file_format: Annotated[
        ImportFormat,
        typer.Option(
            "--format",
            "-f",
            case_sensitive=False,
            help="File format; auto: by the suffix (.xml, .json), else by the first character.",
        ),
    ] = ImportFormat.auto,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Save each file's scheme as the newest version of its name.

    Every file is read and validated before anything is saved: if any file is invalid, the
    error lists every problem of every bad file and no scheme is saved (fix them and run the
    command again). The schemes are then saved in one transaction, in the order given, so a
    name given twice gets two new versions.
    """
    reads = [_read_scheme(path, file_format) for path in files]
    bad = [read for read in reads if read.scheme is None]
    if bad:
        fail(_problems_text(bad, len(reads)))
    saved: list[dict[str, object]] = []
    with (
        Engine(database) as engine,
        translate_connection_errors(engine.url),
        engine.database.begin() as connection,
    ):
        for read in reads:
            if read.scheme is not None:
                version = engine.schemes.save(read.scheme, connection=connection)
                saved.append({"file": str(read.file), "name": read.scheme.name, "version": version})
    if as_json:
        print_json(saved)
        return
    for item in saved:
        console.print(
            Text.assemble(
                "Imported ",
                (str(item["name"]), "bold"),
                f" version {item['version']} from {item['file']}",
            ),
            soft_wrap=True,
        )


# -- export ------------------------------------------------------------------------------------


@schemes_app.command("export")
@reports_errors
def export_scheme(
    name: NameArgument,
    version: VersionOption = None,
    file_format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-f",
            case_sensitive=False,
            show_default=False,
            help="xml (OptimaJet) or json; default: json for an --output ending in .json, "
            "else xml.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file (default: standard output)."),
    ] = None,
    database: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
) -> None:
    """Write a saved scheme as XML or JSON, to standard output or --output FILE.

    Either format imports back (`flowkeeper schemes import`) to an equal scheme. With
    --output, a line saying what was written goes to standard error.
    """
    if as_json:
        if file_format is ExportFormat.xml:
            raise InvalidArgument("--json and --format xml contradict each other; give one")
        file_format = ExportFormat.json
    if file_format is None:
        json_file = output is not None and output.suffix.lower() == ".json"
        file_format = ExportFormat.json if json_file else ExportFormat.xml
    with Engine(database) as engine:
        if version is None:
            version = engine.schemes.newest_version(name)
        scheme = engine.schemes.get(name, version)
    if file_format is ExportFormat.xml:
        text = scheme.to_xml()
    else:
        text = json.dumps(scheme.to_dict(), indent=2, ensure_ascii=False)
    if not text.endswith("\n"):
        text += "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    errors.print(
        Text(f"Wrote scheme {name!r} version {version} as {file_format.value.upper()} to {output}"),
        highlight=False,
        soft_wrap=True,
    )


# -- list --------------------------------------------------------------------------------------


def _info_dict(info: SchemeInfo) -> dict[str, object]:
    return {
        "name": info.code,
        "version": info.version,
        "obsolete": info.obsolete,
        "created_at": info.created_at.isoformat(),
        "tenant_id": info.tenant_id,
    }


@schemes_app.command("list")
@reports_errors
def list_schemes(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """List every saved scheme by name: its newest version and when that was saved."""
    with Engine(database) as engine:
        infos = engine.schemes.list()
    if as_json:
        print_json([_info_dict(info) for info in infos])
        return
    if not infos:
        console.print("No schemes saved yet; add one with `flowkeeper schemes import FILE`.")
        return
    table = Table(
        title=f"{len(infos)} scheme{'s' if len(infos) != 1 else ''}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("name", no_wrap=True)
    table.add_column("newest version", justify="right")
    table.add_column("created at", no_wrap=True)
    for info in infos:
        table.add_row(Text(info.code), str(info.version), utc_text(info.created_at))
    console.print(table)


# -- show --------------------------------------------------------------------------------------


def _joiner(concatenation: Concatenation) -> str:
    return " and " if concatenation is Concatenation.AND else " or "


def condition_text(condition: Condition) -> str:
    """One condition as it reads: ``@Sum > 100``, ``not IsApproved(p)``, ``otherwise``."""
    if condition.type is ConditionType.ALWAYS:
        text = "always"
    elif condition.type is ConditionType.OTHERWISE:
        text = "otherwise"
    elif condition.type is ConditionType.EXPRESSION:
        text = condition.expression or ""
        if condition.inversion:
            text = f"not ({text})"
    else:
        parameter = condition.parameter or ""
        text = f"{condition.name}({parameter})" if parameter else str(condition.name)
        if condition.inversion:
            text = f"not {text}"
    return text


def transition_text(transition: Transition) -> str:
    """``From --Command[Approve]--> To`` (``--Auto-->`` for an automatic transition)."""
    trigger = transition.trigger
    label = trigger.type.value
    if trigger.type is not TriggerType.AUTO or trigger.name:
        label += f"[{trigger.name or ''}]"
    return f"{transition.from_activity} --{label}--> {transition.to_activity}"


def conditions_text(transition: Transition) -> str:
    """The conditions joined as the transition combines them (empty when it always fires)."""
    if transition.is_always:
        return ""
    joiner = _joiner(transition.conditions_concatenation)
    return joiner.join(condition_text(c) for c in transition.conditions)


def restrictions_text(transition: Transition) -> str:
    """``allow Manager or Author; restrict Intern``, or empty."""
    parts = []
    for kind, concatenation in (
        (RestrictionType.ALLOW, transition.allow_concatenation),
        (RestrictionType.RESTRICT, transition.restrict_concatenation),
    ):
        actors = [r.actor for r in transition.restrictions if r.type is kind]
        if actors:
            parts.append(f"{kind.value.lower()} {_joiner(concatenation).join(actors)}")
    return "; ".join(parts)


def _actions_text(actions: tuple[ActionRef, ...]) -> str:
    ordered = sorted(actions, key=lambda a: a.order)
    return ", ".join(f"{a.name}({a.parameter})" if a.parameter else a.name for a in ordered)


def _section(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column(column)
    return table


def scheme_summary(scheme: Scheme, info: SchemeInfo | None) -> Group:
    """A readable summary: header, then one table per non-empty part of the scheme."""
    header = Text.assemble(("Scheme ", "bold"), (scheme.name, "bold cyan"))
    if info is not None:
        header.append(f", version {info.version}")
        header.append(" (obsolete)" if info.obsolete else " (newest)")
        header.append(f", saved {utc_text(info.created_at)}")
    parts: list[Table | Text] = [header]

    activities = _section("Activities", "", "activity", "state", "actions on entering")
    for a in scheme.activities:
        marks = ("initial " if a.is_initial else "") + ("final" if a.is_final else "")
        activities.add_row(
            marks.strip(), Text(a.name), Text(a.state or ""), Text(_actions_text(a.implementation))
        )
    parts.append(activities)

    if scheme.transitions:
        lines = Text()
        for t in scheme.transitions:
            details = [t.name, t.classifier.value]
            conditions = conditions_text(t)
            if conditions:
                details.append(f"if {conditions}")
            restrictions = restrictions_text(t)
            if restrictions:
                details.append(restrictions)
            lines.append(f"  {transition_text(t)}\n", style="bold")
            lines.append(f"      {' · '.join(details)}\n")
        parts += [Text("Transitions", style="bold"), lines]

    if scheme.commands:
        commands = _section("Commands", "command", "caption", "input parameters")
        for c in scheme.commands:
            inputs = ", ".join(
                (i.name if i.name == i.parameter else f"{i.name}→{i.parameter}")
                + (" (required)" if i.required else "")
                for i in c.input_parameters
            )
            commands.add_row(Text(c.name), Text(scheme.localized("Command", c.name)), Text(inputs))
        parts.append(commands)

    if scheme.actors:
        actors = _section("Actors", "actor", "rule", "value")
        for actor in scheme.actors:
            actors.add_row(Text(actor.name), Text(actor.rule), Text(actor.value or ""))
        parts.append(actors)

    if scheme.timers:
        timers = _section("Timers", "timer", "type", "value", "keeps a running one")
        for timer in scheme.timers:
            timers.add_row(
                Text(timer.name),
                timer.type.value,
                Text(timer.value),
                "yes" if timer.not_override_if_exists else "no",
            )
        parts.append(timers)

    if scheme.parameters:
        parameters = _section("Parameters", "parameter", "type", "purpose", "initial value")
        for p in scheme.parameters:
            initial = "" if p.initial_value is None else p.initial_value
            parameters.add_row(Text(p.name), Text(p.type), p.purpose.value, Text(initial))
        parts.append(parameters)
    return Group(*parts)


@schemes_app.command("show")
@reports_errors
def show_scheme(
    name: NameArgument,
    version: VersionOption = None,
    database: DatabaseOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the scheme's JSON shape (importable).")
    ] = False,
) -> None:
    """Summarize a scheme: activities, transitions, commands, actors, timers, parameters.

    Activities are marked initial and final; each transition reads
    "From --Trigger[Name]--> To", followed by its name, classifier, conditions ("if …") and
    restrictions ("allow …", "restrict …"). With --json, the scheme's JSON shape is printed
    (the same as `schemes export --format json`, and importable).
    """
    with Engine(database) as engine:
        if version is None:
            version = engine.schemes.newest_version(name)
        scheme = engine.schemes.get(name, version)
        infos = engine.schemes.versions(name)
    if as_json:
        print_json(scheme.to_dict())
        return
    info = next((i for i in infos if i.version == version), None)
    console.print(scheme_summary(scheme, info))
