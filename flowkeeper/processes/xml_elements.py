"""Pieces shared by the XML scheme reader: typed attribute values, children checks, raw text.

:class:`ElementReader` collects every problem in ``errors`` (each naming its element)
instead of stopping at the first, so that one :class:`~flowkeeper.errors.SchemeError` can
list them all.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from enum import StrEnum
from typing import TypeVar

from flowkeeper.processes.model import Attributes, Designer

__all__ = ["KNOWN_ATTRIBUTES", "ElementReader", "raw_xml"]

_E = TypeVar("_E", bound=StrEnum)
INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

#: The attributes the model reads, by element; others go to ``extra_attributes``.
KNOWN_ATTRIBUTES: dict[str, frozenset[str]] = {
    tag: frozenset(names.split())
    for tag, names in {
        "Process": "Name",
        "Designer": "X Y Color Hidden",
        "Actor": "Name Rule Value",
        "Parameter": "Name Type Purpose InitialValue",
        "Command": "Name",
        "ParameterRef": "Name NameRef IsRequired DefaultValue",
        "Timer": "Name Type Value NotOverrideIfExists",
        "Comment": "Name Value",
        "Activity": "Name State IsInitial IsFinal IsForSetState IsAutoSchemeUpdate",
        "ActionRef": "NameRef Order",
        "Annotation": "Name",
        "Transition": "Name From To Classifier AllowConcatenationType RestrictConcatenationType"
        " ConditionsConcatenationType IsFork MergeViaSetState DisableParentStateControl",
        "Restriction": "Type NameRef",
        "Trigger": "Type NameRef",
        "Condition": "Type NameRef ConditionInversion ResultOnPreExecution",
        "Localize": "Type ObjectName Value Culture IsDefault",
        "CodeAction": "Name Type IsGlobal IsAsync",
    }.items()
}


def raw_xml(element: ET.Element) -> str:
    """The element as XML text, without the text that follows it."""
    tail, element.tail = element.tail, None
    try:
        return ET.tostring(element, encoding="unicode")
    finally:
        element.tail = tail


class ElementReader:
    """Typed reads of attributes and children; every problem is appended to ``errors``.

    ``owner`` arguments name the model element a problem belongs to (``transition 'A_B'``)
    and ``label`` the attribute as the file spells it (``Classifier``, ``Condition Type``).
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str) -> None:
        """Record one problem."""
        self.errors.append(message)

    def owner(self, kind: str, element: ET.Element, index: int) -> tuple[str, str]:
        """The element's Name (``""`` if missing, which is a problem) and how to name it."""
        name = element.get("Name")
        if name is None:
            self.fail(f"{kind} #{index}: missing Name")
            return "", f"{kind} #{index}"
        return name, f"{kind} {name!r}"

    def attributes(
        self, element: ET.Element, owner: str, *, keep: bool = True
    ) -> tuple[dict[str, str], Attributes]:
        """The known attributes (:data:`KNOWN_ATTRIBUTES`) by name, and the others in
        document order. With ``keep=False`` the element has nowhere to keep unknown
        attributes, so each is a problem.
        """
        known = KNOWN_ATTRIBUTES.get(element.tag, frozenset())
        values: dict[str, str] = {}
        extra: list[tuple[str, str]] = []
        for key, value in element.attrib.items():
            if key in known:
                values[key] = value
            elif keep:
                extra.append((key, value))
            else:
                self.fail(f"{owner}: unknown attribute {key!r} on <{element.tag}>")
        return values, tuple(extra)

    def children(self, element: ET.Element, owner: str) -> list[ET.Element]:
        """The child elements; text between them other than white space is a problem."""
        for text in (element.text, *(child.tail for child in element)):
            if text and text.strip():
                snippet = text.strip()[:40]
                self.fail(f"{owner}: unexpected text {snippet!r} in <{element.tag}>")
        return list(element)

    def unexpected(self, child: ET.Element, parent: ET.Element, owner: str) -> None:
        """Report a child element that cannot be kept where it is."""
        self.fail(f"{owner}: unexpected element <{child.tag}> in <{parent.tag}>")

    def leaf(self, element: ET.Element, owner: str) -> None:
        """Check that the element has no children and no text."""
        for child in self.children(element, owner):
            self.unexpected(child, element, owner)

    def items(self, container: ET.Element, owner: str, tag: str) -> list[ET.Element]:
        """The ``tag`` children of a list element such as ``<Actors>``; others are problems."""
        self.attributes(container, owner, keep=False)
        found = []
        for child in self.children(container, owner):
            if child.tag == tag:
                found.append(child)
            else:
                self.unexpected(child, container, owner)
        return found

    def text(self, element: ET.Element, owner: str) -> str:
        """The text (usually CDATA) of an element that holds nothing else."""
        self.attributes(element, owner, keep=False)
        for child in element:
            self.unexpected(child, element, owner)
        return element.text or ""

    def once(self, seen: set[str], child: ET.Element, owner: str) -> None:
        """Report a child that may appear once and appears again."""
        if child.tag in seen:
            self.fail(f"{owner}: more than one <{child.tag}>")
        seen.add(child.tag)

    def required(self, values: dict[str, str], key: str, owner: str, label: str = "") -> str:
        """The attribute's value; ``""`` if missing, which is a problem."""
        value = values.get(key)
        if value is None:
            self.fail(f"{owner}: missing {label}{key}")
            return ""
        return value

    def flag(self, value: str | None, owner: str, label: str) -> bool | None:
        """``true``/``false`` in any case, ``None`` when absent (or wrong: a problem)."""
        if value is None:
            return None
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(f"{owner}: {label} {value!r} is not true or false")
        return None

    def boolean(self, value: str | None, default: bool, owner: str, label: str) -> bool:
        """Like :meth:`flag`, with a default for an absent attribute."""
        result = self.flag(value, owner, label)
        return default if result is None else result

    def choice(self, kind: type[_E], value: str | None, default: _E, owner: str, label: str) -> _E:
        """One of an enum's values; ``default`` when absent (or wrong: a problem)."""
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            self.fail(f"{owner}: {label} {value!r} is not one of {allowed}")
            return default

    def required_choice(
        self, kind: type[_E], values: dict[str, str], key: str, owner: str, label: str
    ) -> _E:
        """Like :meth:`choice` for an attribute that must be present."""
        default = next(iter(kind))
        if key not in values:
            self.fail(f"{owner}: missing {label}")
            return default
        return self.choice(kind, values[key], default, owner, label)

    def integer(self, value: str | None, default: int, owner: str, label: str) -> int:
        """A decimal integer; ``default`` when absent (or wrong: a problem)."""
        if value is None:
            return default
        if INTEGER.fullmatch(value):
            return int(value)
        self.fail(f"{owner}: {label} {value!r} is not an integer")
        return default

    def number(self, value: str | None, owner: str, label: str) -> float | None:
        """A finite decimal number, ``None`` when absent (or wrong: a problem)."""
        if value is None:
            return None
        if NUMBER.fullmatch(value) and math.isfinite(float(value)):
            return float(value)
        self.fail(f"{owner}: {label} {value!r} is not a number")
        return None

    def designer(self, element: ET.Element, owner: str) -> Designer:
        """A ``<Designer>`` element: position, colour, visibility and anything else kept."""
        values, extra = self.attributes(element, owner)
        self.leaf(element, owner)
        return Designer(
            x=self.number(values.get("X"), owner, "Designer X"),
            y=self.number(values.get("Y"), owner, "Designer Y"),
            color=values.get("Color"),
            hidden=self.flag(values.get("Hidden"), owner, "Designer Hidden"),
            extra_attributes=extra,
        )
