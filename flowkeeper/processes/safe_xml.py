"""A guarded XML parser for scheme files that may come from strangers.

Python's expat already refuses to fetch external entities and limits entity expansion, but
a scheme never needs a document type declaration at all, so this parser refuses any
``<!DOCTYPE …>`` (and with it every entity declaration) before expat reads it. That closes
billion-laughs bombs, external entities and DTD retrieval with the standard library alone, in
the way ``defusedxml`` does it, without another dependency and its type stubs.

Comments and processing instructions are not kept; attributes keep their document order.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from xml.parsers import expat

from flowkeeper.errors import SchemeError

__all__ = ["element_problem", "parse_xml"]


class _Refused(Exception):
    """Internal: the document declares something a scheme must not have."""


def _refuse(what: str) -> _Refused:
    return _Refused(f"{what} are not allowed in a scheme (refused for safety)")


def parse_xml(data: str | bytes, *, source: str | None = None) -> ET.Element:
    """Parse one XML document into an element tree, refusing DTDs and entity declarations.

    Raises :class:`~flowkeeper.errors.SchemeError` when the text is not well-formed XML or
    declares a document type or entities.
    """
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.ordered_attributes = True
    parser.buffer_text = True

    def start(tag: str, attributes: list[str]) -> None:
        builder.start(tag, dict(zip(attributes[::2], attributes[1::2], strict=True)))

    def doctype(*_: object) -> None:
        raise _refuse("document type declarations (<!DOCTYPE>)")

    def entity(*_: object) -> None:
        raise _refuse("entity declarations (<!ENTITY>)")

    def external(*_: object) -> int:
        raise _refuse("external entities")

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    try:
        parser.Parse(data, True)
    except _Refused as refused:
        raise SchemeError([str(refused)], source=source) from None
    except expat.ExpatError as err:
        raise SchemeError([f"not well-formed XML: {err}"], source=source) from None
    return builder.close()


def element_problem(text: str) -> str | None:
    """Why ``text`` is not exactly one well-formed XML element, or ``None`` when it is.

    Used for the raw ``extra_elements`` of a scheme, which are written into a document.
    """
    if not re.match(r"\s*<[^?!]", text):
        return "it does not start with an element"
    try:
        parse_xml(text)
    except SchemeError as err:
        return "; ".join(err.errors)
    return None
