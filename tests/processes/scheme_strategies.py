"""Hypothesis strategies for any scheme the model can hold and XML can carry.

Names and texts include unicode, ``<&"'``, ``]]>``, tabs, line feeds and carriage returns;
designer coordinates are any finite floats; extra attributes and elements are generated
in the form the XML reader keeps them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import strategies as st

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
from flowkeeper.processes.xml_elements import KNOWN_ATTRIBUTES

_chars = st.characters(blacklist_categories=("Cs", "Cc", "Cn")) | st.sampled_from("<&\"'\n\t\r]>")
texts = st.text(_chars, max_size=12)
names = st.text(_chars, min_size=1, max_size=10)
maybe = st.none() | texts
_attribute_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,6}", fullmatch=True)


def extra_attributes(tag: str) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    known = KNOWN_ATTRIBUTES[tag]
    keys = _attribute_names.filter(lambda k: k not in known)
    return st.dictionaries(keys, texts, max_size=2).map(lambda d: tuple(d.items()))


def _raw_element(tag: str, value: str, text: str) -> str:
    element = ET.Element(tag, {"v": value})
    element.text = text or None
    return ET.tostring(element, encoding="unicode")


_raw_texts = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), max_size=8)
extra_elements = st.lists(
    st.builds(
        _raw_element, st.from_regex(r"Ext[A-Za-z]{0,4}", fullmatch=True), _raw_texts, _raw_texts
    ),
    max_size=2,
).map(tuple)
coordinates = st.none() | st.floats(allow_nan=False, allow_infinity=False)
designers = st.none() | st.builds(
    Designer,
    coordinates,
    coordinates,
    maybe,
    st.none() | st.booleans(),
    extra_attributes("Designer"),
)
action_refs = st.builds(ActionRef, names, st.integers(), maybe, extra_attributes("ActionRef"))
conditions = st.builds(
    Condition,
    st.sampled_from(ConditionType),
    maybe,
    maybe,
    st.booleans(),
    maybe,
    st.none() | st.booleans(),
)


def _tuples(
    strategy: st.SearchStrategy[object], size: int = 3
) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(strategy, max_size=size).map(tuple)


activities = st.builds(
    Activity,
    name=names,
    state=maybe,
    is_initial=st.booleans(),
    is_final=st.booleans(),
    is_for_set_state=st.booleans(),
    is_auto_scheme_update=st.booleans(),
    implementation=_tuples(action_refs),
    pre_execution=_tuples(action_refs, 2),
    annotations=_tuples(st.builds(Annotation, names, texts), 2),
    designer=designers,
    extra_attributes=extra_attributes("Activity"),
    extra_elements=extra_elements,
)
transitions = st.builds(
    Transition,
    name=names,
    from_activity=names,
    to_activity=names,
    trigger=st.builds(Trigger, st.sampled_from(TriggerType), st.none() | names),
    classifier=st.sampled_from(Classifier),
    conditions=_tuples(conditions),
    restrictions=_tuples(st.builds(Restriction, st.sampled_from(RestrictionType), names)),
    allow_concatenation=st.sampled_from(Concatenation),
    restrict_concatenation=st.sampled_from(Concatenation),
    conditions_concatenation=st.sampled_from(Concatenation),
    is_fork=st.booleans(),
    merge_via_set_state=st.booleans(),
    disable_parent_state_control=st.booleans(),
    designer=designers,
    extra_attributes=extra_attributes("Transition"),
    extra_elements=extra_elements,
)
schemes = st.builds(
    Scheme,
    name=names,
    activities=_tuples(activities),
    transitions=_tuples(transitions),
    commands=_tuples(
        st.builds(
            Command,
            names,
            _tuples(st.builds(CommandInput, names, texts, st.booleans(), maybe), 2),
            extra_attributes("Command"),
        ),
        2,
    ),
    actors=_tuples(st.builds(Actor, names, texts, maybe, extra_attributes("Actor")), 2),
    parameters=_tuples(
        st.builds(
            Parameter,
            names,
            texts,
            st.sampled_from(ParameterPurpose),
            maybe,
            extra_attributes("Parameter"),
        ),
        2,
    ),
    timers=_tuples(st.builds(Timer, names, st.sampled_from(TimerType), texts, st.booleans()), 2),
    localization=_tuples(st.builds(Localize, texts, texts, texts, texts, st.booleans()), 2),
    comments=_tuples(st.builds(Comment, names, texts, designers, extra_attributes("Comment")), 2),
    code_actions=_tuples(
        st.builds(
            CodeAction,
            names,
            texts,
            st.text(_chars, max_size=40),
            maybe,
            st.booleans(),
            st.booleans(),
            extra_attributes("CodeAction"),
            extra_elements,
        ),
        2,
    ),
    designer=designers,
    extra_attributes=extra_attributes("Process"),
    extra_elements=extra_elements,
)
"""Any scheme the model can hold and XML can carry (names with ``<&"'``, unicode, floats)."""
