"""Skeleton rendering gives exactly what Jinja gives, for every template shape it accepts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from service.rendering import MERGE_FIELDS
from service.skeletons import _MARK, SkeletonTemplate, Use, classify
from tests.unit.test_rendering import SHIPPED

NAMES = frozenset({"a", "b", "c", "flag"})


def env() -> ImmutableSandboxedEnvironment:
    e = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, trim_blocks=True
    )
    e.globals.clear()
    return e


# Values that print differently although some compare equal, text that looks like format
# syntax or like the placeholder mark, blanks and newlines.
VALUES = st.one_of(
    st.sampled_from(["", " ", "0", "%s", "%%", "{a}", "{{ 7*7 }}", _MARK, f"{_MARK}0{_MARK}"]),
    st.sampled_from([0, 1, -1, 0.0, -0.0, 1.5, True, False, None]),
    st.text(max_size=20),
    st.integers(),
)
FIELDS = st.fixed_dictionaries({name: VALUES for name in sorted(NAMES)})

SHAPES = {
    "printed": "Hi {{ a }}, {{ b }} and {{ a }} again.\n",
    "tested": "x{% if flag %} paid {{ flag }}{% else %} none {{ flag }}{% endif %}{{ b }}",
    "elif": "{% if a %}A{{ a }}{% elif b %}B{{ b }}{% else %}C{% endif %}.",
    "steering filter": "{{ a|upper }} / {{ b }}",
    "steering compare": "{% if c == 1 %}one{% endif %} {{ c }}",
    "steering set": "{% set g = a ~ '!' %}{{ g }} {{ b }}",
    "shadowing set": "{{ a }} {% set a = 'mine' %}{{ a }} {{ b }}",
    "condexpr": "{{ 'yes' if flag else 'no' }} {{ b }}",
    "literal percent and braces": "100% of {a} {{ a }} %s %% {{ '{' }}",
}
UNMODELLED = {
    "loop": "{% for x in [1, 2] %}{{ a }}{% endfor %}",
    "filter block": "{% filter upper %}{{ a }}{% endfilter %}",
    "random": "{{ [1]|random }}",  # one choice: the test compares outputs
    "macro": "{% macro m() %}{{ a }}{% endmacro %}{{ m() }}",
    "block set": "{% set x %}{{ a }}{% endset %}{{ x|upper }}",
    "method call": "{{ a.upper() }}",
}


@pytest.mark.parametrize("source", SHAPES.values(), ids=SHAPES.keys())
@settings(max_examples=150)
@given(fields=FIELDS)
def test_every_modelled_shape_renders_as_jinja_does(source: str, fields: dict[str, Any]) -> None:
    template = SkeletonTemplate(env(), source, NAMES)
    assert template.fast
    expected = env().from_string(source).render(fields)
    assert template.render(fields) == expected
    assert template.render(fields) == expected  # and again, from the cached skeleton


@pytest.mark.parametrize("source", UNMODELLED.values(), ids=UNMODELLED.keys())
def test_what_is_not_modelled_renders_through_jinja(source: str) -> None:
    template = SkeletonTemplate(env(), source, NAMES)
    assert not template.fast
    fields = {"a": "x", "b": "y", "c": 1, "flag": True}
    assert template.render(fields) == env().from_string(source).render(fields)


def test_uses_are_read_from_the_syntax_tree() -> None:
    e = env()
    tree = e.parse("{{ a }}{% if flag %}{{ b }}{% endif %}{{ c|upper }}{% if b %}{% endif %}")
    assert classify(tree, NAMES) == {
        "a": Use.PRINTED,
        "flag": Use.TESTED,
        "b": Use.TESTED,
        "c": Use.STEERING,
    }


def test_a_missing_field_is_reported_as_jinja_reports_it() -> None:
    template = SkeletonTemplate(env(), SHAPES["printed"], NAMES)
    with pytest.raises(UndefinedError):
        template.render({"a": "x"})


@settings(max_examples=200)
@given(
    fields=st.fixed_dictionaries(
        {
            name: st.one_of(st.text(max_size=30), st.integers(), st.booleans())
            for name in sorted(MERGE_FIELDS)
        }
    ),
    stage=st.sampled_from([7, 14, 21, 28, 35, 42]),
)
def test_the_shipped_templates_render_as_jinja_does(fields: dict[str, Any], stage: int) -> None:
    source = (SHIPPED / f"stage_{stage:02d}.txt").read_text(encoding="utf-8")
    template = SkeletonTemplate(env(), source, MERGE_FIELDS)
    assert template.fast
    assert template.render(fields) == env().from_string(source).render(fields)
