"""Write a scheme as OptimaJet Workflow Engine XML (2-space indented, CDATA for code).

The output reads back to an equal scheme with
:func:`~flowkeeper.processes.xml_format.scheme_from_xml`. Attributes the model does not know
are written after the known ones of their element, unknown elements (raw XML text) after
its known children.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from flowkeeper.errors import SchemeError
from flowkeeper.processes.model import (
    ActionRef,
    Activity,
    Actor,
    Attributes,
    CodeAction,
    Command,
    Comment,
    Condition,
    ConditionType,
    Designer,
    Localize,
    Parameter,
    Scheme,
    Timer,
    Transition,
)
from flowkeeper.processes.safe_xml import element_problem
from flowkeeper.processes.xml_elements import KNOWN_ATTRIBUTES

__all__ = ["scheme_to_xml"]

# Characters XML 1.0 cannot carry at all, even as character references.
_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NAME = re.compile(r"[^\W\d][\w.\-:]*")
_ATTRIBUTE_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\n": "&#10;",
        "\r": "&#13;",
        "\t": "&#9;",
    }
)


@dataclass
class _Node:
    """An element to write: attributes in order, then CDATA text or children."""

    tag: str
    attributes: list[tuple[str, str]] = field(default_factory=list)
    children: list[_Node | str] = field(default_factory=list)  # str: raw XML of an element
    text: str | None = None

    def add(self, key: str, value: str | None) -> _Node:
        if value is not None:
            self.attributes.append((key, value))
        return self


def scheme_to_xml(scheme: Scheme) -> str:
    """The scheme as OptimaJet XML text; ``scheme_from_xml(scheme_to_xml(s)) == s``.

    Raises :class:`~flowkeeper.errors.SchemeError` when something cannot be written as
    XML: a character XML cannot carry, an extra attribute with an invalid or clashing name,
    an extra element that is not one well-formed element, or a designer number that is not
    finite.
    """
    writer = _Writer()
    root = writer.process(scheme)
    lines: list[str] = []
    writer.render(root, 0, lines)
    if writer.errors:
        raise SchemeError(writer.errors, source=repr(scheme.name))
    return "\n".join(lines) + "\n"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


class _Writer:
    """Builds the node tree of a scheme, collecting what cannot be written."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def extras(self, node: _Node, extra: Attributes, owner: str) -> _Node:
        known = KNOWN_ATTRIBUTES.get(node.tag, frozenset())
        seen: set[str] = set()
        for key, value in extra:
            if not _NAME.fullmatch(key):
                self.errors.append(f"{owner}: extra attribute {key!r} is not an XML name")
            elif key in known or key in seen:
                self.errors.append(f"{owner}: extra attribute {key!r} clashes with another")
            else:
                seen.add(key)
                node.attributes.append((key, value))
        return node

    def raw(self, node: _Node, elements: Iterable[str], owner: str) -> _Node:
        for text in elements:
            problem = element_problem(text)
            if problem:
                self.errors.append(f"{owner}: extra element {text[:40]!r}: {problem}")
            else:
                node.children.append(text.strip())
        return node

    def designer(self, designer: Designer | None, owner: str) -> list[_Node | str]:
        if designer is None:
            return []
        node = _Node("Designer").add("X", _number(designer.x)).add("Y", _number(designer.y))
        node.add("Color", designer.color)
        node.add("Hidden", None if designer.hidden is None else _bool(designer.hidden))
        for value in (designer.x, designer.y):
            if value is not None and not math.isfinite(value):
                self.errors.append(f"{owner}: Designer coordinate {value} is not finite")
        return [self.extras(node, designer.extra_attributes, owner)]

    def process(self, scheme: Scheme) -> _Node:
        owner = f"process {scheme.name!r}"
        root = self.extras(
            _Node("Process").add("Name", scheme.name), scheme.extra_attributes, owner
        )
        root.children += self.designer(scheme.designer, owner)
        sections: list[tuple[str, list[_Node]]] = [
            ("Actors", [self.actor_node(a) for a in scheme.actors]),
            ("Parameters", [self.parameter_node(p) for p in scheme.parameters]),
            ("Commands", [self.command_node(c) for c in scheme.commands]),
            ("Timers", [self.timer_node(t) for t in scheme.timers]),
            ("Comments", [self.comment_node(c) for c in scheme.comments]),
            ("Activities", [self.activity(a) for a in scheme.activities]),
            ("Transitions", [self.transition(t) for t in scheme.transitions]),
            ("CodeActions", [self.code_action(c) for c in scheme.code_actions]),
            ("Localization", [self.localize_node(item) for item in scheme.localization]),
        ]
        for tag, items in sections:
            if items:
                root.children.append(_Node(tag, children=list(items)))
        return self.raw(root, scheme.extra_elements, owner)

    def actor_node(self, actor: Actor) -> _Node:
        node = _Node("Actor").add("Name", actor.name).add("Rule", actor.rule)
        node.add("Value", actor.value)
        return self.extras(node, actor.extra_attributes, f"actor {actor.name!r}")

    def parameter_node(self, parameter: Parameter) -> _Node:
        node = _Node("Parameter").add("Name", parameter.name).add("Type", parameter.type)
        node.add("Purpose", parameter.purpose.value).add("InitialValue", parameter.initial_value)
        return self.extras(node, parameter.extra_attributes, f"parameter {parameter.name!r}")

    def command_node(self, command: Command) -> _Node:
        node = self.extras(
            _Node("Command").add("Name", command.name),
            command.extra_attributes,
            f"command {command.name!r}",
        )
        refs = [
            _Node("ParameterRef")
            .add("Name", item.name)
            .add("IsRequired", _bool(item.required))
            .add("DefaultValue", item.default)
            .add("NameRef", item.parameter)
            for item in command.input_parameters
        ]
        if refs:
            node.children.append(_Node("InputParameters", children=list(refs)))
        return node

    def timer_node(self, timer: Timer) -> _Node:
        node = _Node("Timer").add("Name", timer.name).add("Type", timer.type.value)
        node.add("Value", timer.value)
        return node.add("NotOverrideIfExists", _bool(timer.not_override_if_exists))

    def comment_node(self, comment: Comment) -> _Node:
        owner = f"comment {comment.name!r}"
        node = self.extras(
            _Node("Comment").add("Name", comment.name), comment.extra_attributes, owner
        )
        node.add("Value", comment.value)
        node.children += self.designer(comment.designer, owner)
        return node

    def localize_node(self, item: Localize) -> _Node:
        node = _Node("Localize").add("Type", item.type).add("IsDefault", _bool(item.is_default))
        node.add("Culture", item.culture).add("ObjectName", item.object_name)
        return node.add("Value", item.value)

    def code_action(self, action: CodeAction) -> _Node:
        owner = f"code action {action.name!r}"
        node = _Node("CodeAction").add("Name", action.name).add("Type", action.type)
        node.add("IsGlobal", _bool(action.is_global)).add("IsAsync", _bool(action.is_async))
        self.extras(node, action.extra_attributes, owner)
        node.children.append(_Node("ActionCode", text=action.code))
        if action.usings is not None:
            node.children.append(_Node("Usings", text=action.usings))
        return self.raw(node, action.extra_elements, owner)

    def activity(self, activity: Activity) -> _Node:
        owner = f"activity {activity.name!r}"
        node = _Node("Activity").add("Name", activity.name).add("State", activity.state)
        node.add("IsInitial", _bool(activity.is_initial))
        node.add("IsFinal", _bool(activity.is_final))
        node.add("IsForSetState", _bool(activity.is_for_set_state))
        node.add("IsAutoSchemeUpdate", _bool(activity.is_auto_scheme_update))
        self.extras(node, activity.extra_attributes, owner)
        for tag, actions in (
            ("Implementation", activity.implementation),
            ("PreExecutionImplementation", activity.pre_execution),
        ):
            if actions:
                refs: list[_Node | str] = [self.action(a, owner) for a in actions]
                node.children.append(_Node(tag, children=refs))
        if activity.annotations:
            notes: list[_Node | str] = [
                _Node("Annotation", text=note.value).add("Name", note.name)
                for note in activity.annotations
            ]
            node.children.append(_Node("Annotations", children=notes))
        node.children += self.designer(activity.designer, owner)
        return self.raw(node, activity.extra_elements, owner)

    def action(self, action: ActionRef, owner: str) -> _Node:
        node = _Node("ActionRef").add("Order", str(action.order)).add("NameRef", action.name)
        self.extras(node, action.extra_attributes, f"{owner} ActionRef {action.name!r}")
        if action.parameter is not None:
            node.children.append(_Node("ActionParameter", text=action.parameter))
        return node

    def transition(self, transition: Transition) -> _Node:
        owner = f"transition {transition.name!r}"
        node = _Node("Transition").add("Name", transition.name)
        node.add("To", transition.to_activity).add("From", transition.from_activity)
        node.add("Classifier", transition.classifier.value)
        node.add("AllowConcatenationType", transition.allow_concatenation.value)
        node.add("RestrictConcatenationType", transition.restrict_concatenation.value)
        node.add("ConditionsConcatenationType", transition.conditions_concatenation.value)
        node.add("IsFork", _bool(True) if transition.is_fork else None)
        node.add("MergeViaSetState", _bool(True) if transition.merge_via_set_state else None)
        node.add("DisableParentStateControl", _bool(transition.disable_parent_state_control))
        self.extras(node, transition.extra_attributes, owner)
        if transition.restrictions:
            restrictions: list[_Node | str] = [
                _Node("Restriction").add("Type", r.type.value).add("NameRef", r.actor)
                for r in transition.restrictions
            ]
            node.children.append(_Node("Restrictions", children=restrictions))
        trigger = _Node("Trigger").add("Type", transition.trigger.type.value)
        node.children.append(
            _Node("Triggers", children=[trigger.add("NameRef", transition.trigger.name)])
        )
        conditions: list[_Node | str] = [self.condition(c) for c in transition.conditions]
        node.children.append(_Node("Conditions", children=conditions))
        node.children += self.designer(transition.designer, owner)
        return self.raw(node, transition.extra_elements, owner)

    def condition(self, condition: Condition) -> _Node:
        node = _Node("Condition").add("Type", condition.type.value).add("NameRef", condition.name)
        plain = condition.type in (ConditionType.ALWAYS, ConditionType.OTHERWISE)
        if condition.inversion or not plain:
            node.add("ConditionInversion", _bool(condition.inversion))
        if condition.result_on_pre_execution is not None:
            node.add("ResultOnPreExecution", _bool(condition.result_on_pre_execution))
        if condition.parameter is not None:
            node.children.append(_Node("ActionParameter", text=condition.parameter))
        if condition.expression is not None:
            node.children.append(_Node("Expression", text=condition.expression))
        return node

    # Text.

    def render(self, node: _Node | str, depth: int, lines: list[str]) -> None:
        """Append the node's lines, indented two spaces per level."""
        pad = "  " * depth
        if isinstance(node, str):
            lines.append(pad + node)
            return
        head = "<" + node.tag + "".join(f' {k}="{self.attribute(v)}"' for k, v in node.attributes)
        if node.text is not None:
            lines.append(f"{pad}{head}>{self.cdata(node.text)}</{node.tag}>")
        elif not node.children:
            lines.append(f"{pad}{head} />")
        else:
            lines.append(f"{pad}{head}>")
            for child in node.children:
                self.render(child, depth + 1, lines)
            lines.append(f"{pad}</{node.tag}>")

    def legal(self, text: str) -> str:
        bad = _ILLEGAL.search(text)
        if bad:
            self.errors.append(
                f"text {text[:40]!r} holds U+{ord(bad.group()):04X}, which XML cannot carry"
            )
        return text

    def attribute(self, value: str) -> str:
        return self.legal(value).translate(_ATTRIBUTE_ESCAPES)

    def cdata(self, text: str) -> str:
        """CDATA sections for ``text``; ``]]>`` is split across two sections and a carriage
        return (which a parser would turn into a line feed) is written as ``&#13;``."""
        self.legal(text)
        pieces = [
            "<![CDATA[" + part.replace("]]>", "]]]]><![CDATA[>") + "]]>"
            for part in text.split("\r")
        ]
        return "&#13;".join(pieces)
