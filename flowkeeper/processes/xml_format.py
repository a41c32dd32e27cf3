"""Read and write schemes in OptimaJet Workflow Engine's XML format.

Reading is strict about what it understands and keeps what it does not: an attribute the
model does not know is kept, in document order, in ``extra_attributes`` of its element
(Process, Designer, Actor, Parameter, Command, Activity, ActionRef, Transition, Comment,
CodeAction); an unknown child element of ``Process``, ``Activity``, ``Transition`` or
``CodeAction`` is kept as raw XML text in that element's ``extra_elements``. An unknown
element or attribute anywhere else could not be written back, so it is reported rather than
dropped. Every problem in a file is collected before one
:class:`~flowkeeper.errors.SchemeError` is raised. XML comments are not kept.

Writing (:func:`scheme_to_xml`, in :mod:`flowkeeper.processes.xml_writer`) gives 2-space
indented XML that reads back to an equal scheme.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from flowkeeper.errors import SchemeError
from flowkeeper.processes.model import (
    ActionRef,
    Activity,
    Actor,
    Annotation,
    Classifier,
    CodeAction,
    Command,
    CommandInput,
    Comment,
    Concatenation,
    Condition,
    ConditionType,
    Designer,
    Localize,
    Parameter,
    ParameterPurpose,
    Restriction,
    RestrictionType,
    Scheme,
    Timer,
    TimerType,
    Transition,
    Trigger,
    TriggerType,
)
from flowkeeper.processes.safe_xml import parse_xml
from flowkeeper.processes.xml_elements import ElementReader, raw_xml
from flowkeeper.processes.xml_writer import scheme_to_xml

__all__ = ["scheme_from_xml", "scheme_to_xml"]

_SECTIONS = {
    "Actors": "Actor",
    "Parameters": "Parameter",
    "Commands": "Command",
    "Timers": "Timer",
    "Comments": "Comment",
    "Activities": "Activity",
    "Transitions": "Transition",
    "Localization": "Localize",
    "CodeActions": "CodeAction",
}


def scheme_from_xml(source: str | os.PathLike[str], *, validate: bool = True) -> Scheme:
    """Read a scheme from OptimaJet XML text, or from the file at a path.

    ``source`` is XML text when it starts with ``<`` (after white space), otherwise a path.
    Raises :class:`~flowkeeper.errors.SchemeError` listing every structural problem and,
    with ``validate``, every problem that :meth:`Scheme.problems` finds. Document type and
    entity declarations are refused (see :mod:`flowkeeper.processes.safe_xml`).
    """
    data, origin = _load(source)
    root = parse_xml(data, source=origin)
    reader = _SchemeReader()
    scheme = reader.process(root)
    where = origin or (repr(scheme.name) if scheme.name else None)
    if reader.errors:
        raise SchemeError(reader.errors, source=where)
    if validate:
        found = scheme.problems()
        if found:
            raise SchemeError(found, source=where)
    return scheme


def _load(source: str | os.PathLike[str]) -> tuple[str | bytes, str | None]:
    if isinstance(source, str):
        text = source.lstrip().lstrip("\ufeff")
        if text.startswith("<"):
            return text, None
        if not text:
            raise SchemeError(["no XML given (the text is empty)"])
    path = Path(source)
    try:
        return path.read_bytes(), repr(str(path))
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise SchemeError(
            [f"{str(path)!r} is neither XML text nor a readable file: {reason}"]
        ) from None


class _SchemeReader(ElementReader):
    """Turns an element tree into a :class:`Scheme`, collecting every problem on the way."""

    # The scheme and its parts.

    def process(self, root: ET.Element) -> Scheme:
        if root.tag != "Process":
            self.fail(f"the root element is <{root.tag}>, not <Process>")
            return Scheme(name="")
        name, owner = root.get("Name"), "process"
        if name is None:
            self.fail("process: missing Name")
        else:
            owner = f"process {name!r}"
        _, extra = self.attributes(root, owner)
        designer: Designer | None = None
        sections: dict[str, list[ET.Element]] = {tag: [] for tag in _SECTIONS}
        extra_elements: list[str] = []
        seen: set[str] = set()
        for child in self.children(root, owner):
            if child.tag == "Designer":
                self.once(seen, child, owner)
                designer = self.designer(child, owner)
            elif child.tag in _SECTIONS:
                sections[child.tag] += self.items(child, owner, _SECTIONS[child.tag])
            else:
                extra_elements.append(raw_xml(child))

        def each(tag: str) -> list[tuple[int, ET.Element]]:
            return list(enumerate(sections[tag], 1))

        return Scheme(
            name=name or "",
            activities=tuple(self.activity(e, i) for i, e in each("Activities")),
            transitions=tuple(self.transition(e, i) for i, e in each("Transitions")),
            commands=tuple(self.command(e, i) for i, e in each("Commands")),
            actors=tuple(self.actor(e, i) for i, e in each("Actors")),
            parameters=tuple(self.parameter(e, i) for i, e in each("Parameters")),
            timers=tuple(self.timer(e, i) for i, e in each("Timers")),
            localization=tuple(self.localize(e, i) for i, e in each("Localization")),
            comments=tuple(self.comment(e, i) for i, e in each("Comments")),
            code_actions=tuple(self.code_action(e, i) for i, e in each("CodeActions")),
            designer=designer,
            extra_attributes=extra,
            extra_elements=tuple(extra_elements),
        )

    def actor(self, element: ET.Element, index: int) -> Actor:
        name, owner = self.owner("actor", element, index)
        values, extra = self.attributes(element, owner)
        self.leaf(element, owner)
        return Actor(name, values.get("Rule", ""), values.get("Value"), extra)

    def parameter(self, element: ET.Element, index: int) -> Parameter:
        name, owner = self.owner("parameter", element, index)
        values, extra = self.attributes(element, owner)
        self.leaf(element, owner)
        purpose = values.get("Purpose")
        return Parameter(
            name=name,
            type=values.get("Type", "String"),
            purpose=self.choice(
                ParameterPurpose, purpose, ParameterPurpose.TEMPORARY, owner, "Purpose"
            ),
            initial_value=values.get("InitialValue"),
            extra_attributes=extra,
        )

    def command(self, element: ET.Element, index: int) -> Command:
        name, owner = self.owner("command", element, index)
        _, extra = self.attributes(element, owner)
        inputs: list[CommandInput] = []
        for child in self.children(element, owner):
            if child.tag != "InputParameters":
                self.unexpected(child, element, owner)
                continue
            for ref in self.items(child, owner, "ParameterRef"):
                values, _ = self.attributes(ref, owner, keep=False)
                self.leaf(ref, owner)
                input_name = self.required(values, "Name", owner, "ParameterRef ")
                required = values.get("IsRequired")
                inputs.append(
                    CommandInput(
                        name=input_name,
                        parameter=values.get("NameRef", input_name),
                        required=self.boolean(required, False, owner, "ParameterRef IsRequired"),
                        default=values.get("DefaultValue"),
                    )
                )
        return Command(name, tuple(inputs), extra)

    def timer(self, element: ET.Element, index: int) -> Timer:
        name, owner = self.owner("timer", element, index)
        values, _ = self.attributes(element, owner, keep=False)
        self.leaf(element, owner)
        not_override = values.get("NotOverrideIfExists")
        return Timer(
            name=name,
            type=self.required_choice(TimerType, values, "Type", owner, "Type"),
            value=self.required(values, "Value", owner),
            not_override_if_exists=self.boolean(not_override, False, owner, "NotOverrideIfExists"),
        )

    def localize(self, element: ET.Element, index: int) -> Localize:
        owner = f"localize #{index}"
        values, _ = self.attributes(element, owner, keep=False)
        self.leaf(element, owner)
        return Localize(
            type=self.required(values, "Type", owner),
            object_name=self.required(values, "ObjectName", owner),
            value=self.required(values, "Value", owner),
            culture=values.get("Culture", "en-US"),
            is_default=self.boolean(values.get("IsDefault"), False, owner, "IsDefault"),
        )

    def comment(self, element: ET.Element, index: int) -> Comment:
        name, owner = self.owner("comment", element, index)
        values, extra = self.attributes(element, owner)
        designer: Designer | None = None
        seen: set[str] = set()
        for child in self.children(element, owner):
            if child.tag == "Designer":
                self.once(seen, child, owner)
                designer = self.designer(child, owner)
            else:
                self.unexpected(child, element, owner)
        return Comment(name, values.get("Value", ""), designer, extra)

    def code_action(self, element: ET.Element, index: int) -> CodeAction:
        name, owner = self.owner("code action", element, index)
        values, extra = self.attributes(element, owner)
        texts: dict[str, str] = {}
        extra_elements: list[str] = []
        seen: set[str] = set()
        for child in self.children(element, owner):
            if child.tag in ("ActionCode", "Usings"):
                self.once(seen, child, owner)
                texts[child.tag] = self.text(child, owner)
            else:
                extra_elements.append(raw_xml(child))
        return CodeAction(
            name=name,
            type=values.get("Type", "Action"),
            code=texts.get("ActionCode", ""),
            usings=texts.get("Usings"),
            is_global=self.boolean(values.get("IsGlobal"), False, owner, "IsGlobal"),
            is_async=self.boolean(values.get("IsAsync"), False, owner, "IsAsync"),
            extra_attributes=extra,
            extra_elements=tuple(extra_elements),
        )

    def activity(self, element: ET.Element, index: int) -> Activity:
        name, owner = self.owner("activity", element, index)
        flags = {
            "IsInitial": False,
            "IsFinal": False,
            "IsForSetState": True,
            "IsAutoSchemeUpdate": False,
        }
        values, extra = self.attributes(element, owner)
        read = {key: self.boolean(values.get(key), d, owner, key) for key, d in flags.items()}
        actions: dict[str, list[ActionRef]] = {
            "Implementation": [],
            "PreExecutionImplementation": [],
        }
        annotations: list[Annotation] = []
        designer: Designer | None = None
        extra_elements: list[str] = []
        seen: set[str] = set()
        for child in self.children(element, owner):
            if child.tag == "Designer":
                self.once(seen, child, owner)
                designer = self.designer(child, owner)
            elif child.tag in actions:
                actions[child.tag] += (
                    self.action(e, owner) for e in self.items(child, owner, "ActionRef")
                )
            elif child.tag == "Annotations":
                annotations += (
                    self.annotation(e, owner) for e in self.items(child, owner, "Annotation")
                )
            else:
                extra_elements.append(raw_xml(child))
        return Activity(
            name=name,
            state=values.get("State"),
            is_initial=read["IsInitial"],
            is_final=read["IsFinal"],
            is_for_set_state=read["IsForSetState"],
            is_auto_scheme_update=read["IsAutoSchemeUpdate"],
            implementation=tuple(actions["Implementation"]),
            pre_execution=tuple(actions["PreExecutionImplementation"]),
            annotations=tuple(annotations),
            designer=designer,
            extra_attributes=extra,
            extra_elements=tuple(extra_elements),
        )

    def action(self, element: ET.Element, owner: str) -> ActionRef:
        values, extra = self.attributes(element, owner)
        name = self.required(values, "NameRef", owner, "ActionRef ")
        number = self.integer(values.get("Order"), 1, owner, f"ActionRef {name!r} Order")
        parameter: str | None = None
        for child in self.children(element, owner):
            if child.tag == "ActionParameter" and parameter is None:
                parameter = self.text(child, owner)
            else:
                self.unexpected(child, element, owner)
        return ActionRef(name, number, parameter, extra)

    def annotation(self, element: ET.Element, owner: str) -> Annotation:
        values, _ = self.attributes(element, owner, keep=False)
        name = self.required(values, "Name", owner, "Annotation ")
        for child in element:
            self.unexpected(child, element, owner)
        return Annotation(name, element.text or "")

    def transition(self, element: ET.Element, index: int) -> Transition:
        name, owner = self.owner("transition", element, index)
        flags = ("IsFork", "MergeViaSetState", "DisableParentStateControl")
        joins = (
            "AllowConcatenationType",
            "RestrictConcatenationType",
            "ConditionsConcatenationType",
        )
        values, extra = self.attributes(element, owner)
        read = {key: self.boolean(values.get(key), False, owner, key) for key in flags}
        join = {
            key: self.choice(Concatenation, values.get(key), Concatenation.AND, owner, key)
            for key in joins
        }
        triggers: list[Trigger] = []
        conditions: list[Condition] | None = None
        restrictions: list[Restriction] = []
        designer: Designer | None = None
        extra_elements: list[str] = []
        seen: set[str] = set()
        for child in self.children(element, owner):
            if child.tag == "Designer":
                self.once(seen, child, owner)
                designer = self.designer(child, owner)
            elif child.tag == "Triggers":
                triggers += (self.trigger(e, owner) for e in self.items(child, owner, "Trigger"))
            elif child.tag == "Conditions":
                items = self.items(child, owner, "Condition")
                conditions = [*(conditions or ()), *(self.condition(e, owner) for e in items)]
            elif child.tag == "Restrictions":
                items = self.items(child, owner, "Restriction")
                restrictions += (self.restriction(e, owner) for e in items)
            else:
                extra_elements.append(raw_xml(child))
        if len(triggers) != 1:
            self.fail(f"{owner}: has {len(triggers)} triggers, needs exactly one <Trigger>")
        return Transition(
            name=name,
            from_activity=self.required(values, "From", owner),
            to_activity=self.required(values, "To", owner),
            trigger=triggers[0] if triggers else Trigger(TriggerType.AUTO),
            classifier=self.choice(
                Classifier, values.get("Classifier"), Classifier.NOT_SPECIFIED, owner, "Classifier"
            ),
            conditions=Transition.conditions if conditions is None else tuple(conditions),
            restrictions=tuple(restrictions),
            allow_concatenation=join["AllowConcatenationType"],
            restrict_concatenation=join["RestrictConcatenationType"],
            conditions_concatenation=join["ConditionsConcatenationType"],
            is_fork=read["IsFork"],
            merge_via_set_state=read["MergeViaSetState"],
            disable_parent_state_control=read["DisableParentStateControl"],
            designer=designer,
            extra_attributes=extra,
            extra_elements=tuple(extra_elements),
        )

    def trigger(self, element: ET.Element, owner: str) -> Trigger:
        values, _ = self.attributes(element, owner, keep=False)
        self.leaf(element, owner)
        return Trigger(
            self.required_choice(TriggerType, values, "Type", owner, "Trigger Type"),
            values.get("NameRef"),
        )

    def restriction(self, element: ET.Element, owner: str) -> Restriction:
        values, _ = self.attributes(element, owner, keep=False)
        self.leaf(element, owner)
        return Restriction(
            self.required_choice(RestrictionType, values, "Type", owner, "Restriction Type"),
            self.required(values, "NameRef", owner, "Restriction "),
        )

    def condition(self, element: ET.Element, owner: str) -> Condition:
        values, _ = self.attributes(element, owner, keep=False)
        texts: dict[str, str] = {}
        seen: set[str] = set()
        for child in self.children(element, owner):
            if child.tag in ("ActionParameter", "Expression"):
                self.once(seen, child, owner)
                texts[child.tag] = self.text(child, owner)
            else:
                self.unexpected(child, element, owner)
        inversion = values.get("ConditionInversion")
        return Condition(
            type=self.required_choice(ConditionType, values, "Type", owner, "Condition Type"),
            name=values.get("NameRef"),
            expression=texts.get("Expression"),
            inversion=self.boolean(inversion, False, owner, "Condition ConditionInversion"),
            parameter=texts.get("ActionParameter"),
            result_on_pre_execution=self.flag(
                values.get("ResultOnPreExecution"), owner, "Condition ResultOnPreExecution"
            ),
        )
