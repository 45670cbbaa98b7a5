"""Fast rendering of one template for many invoices: Jinja renders each *shape* once.

A reminder is fixed text with merge values printed in place. Jinja renders it correctly in
about 4 µs, most of it building a context, and a 100k-row plan renders tens of thousands. So a
template is rendered by Jinja once per shape, with a placeholder where each value that is only
printed goes, and filling that skeleton for an invoice is one ``%`` format.

Which values are only printed is read from the template's syntax tree:

- *printed*: every use is a bare ``{{ name }}`` — a placeholder in the skeleton;
- *tested*: used bare in ``{% if name %}`` (and perhaps printed) — only its truth shapes the
  text, so the skeleton is keyed on that (a falsy value itself, since ``0`` and ``""`` print
  differently);
- *steering*: any other use (a filter's input, a comparison, a ``set``) — the skeleton is keyed
  on the value itself.

A template using anything this analysis does not model (loops, macros, calls, filter blocks,
includes, the ``random`` filter) renders through Jinja every time, as do values that cannot key
a cache. Values are printed with ``%s``, that is ``str(value)``, as Jinja prints them; tests
compare both paths on every shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from operator import itemgetter
from typing import NamedTuple

from jinja2 import Environment, Template, nodes

# Node types whose rendering is a pure function of the names they read.
_MODELLED = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Const,
    nodes.If,
    nodes.CondExpr,
    nodes.Compare,
    nodes.Operand,
    nodes.Not,
    nodes.And,
    nodes.Or,
    nodes.Test,
    nodes.Filter,
    nodes.Keyword,
    nodes.Concat,
    nodes.BinExpr,
    nodes.UnaryExpr,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Slice,
    nodes.Tuple,
    nodes.List,
    nodes.Dict,
    nodes.Pair,
    nodes.Assign,
)
_IMPURE_FILTERS = frozenset({"random"})
# A private-use character marks placeholders while a skeleton is built; a template or a
# steering value containing it renders through Jinja instead.
_MARK = "\ue000"
_PLACEHOLDER = re.compile(f"{_MARK}(\\d+){_MARK}")
_CACHE_LIMIT = 4096


class Use(Enum):
    PRINTED = 1
    TESTED = 2
    STEERING = 3


def _walk(
    node: nodes.Node, parent: nodes.Node | None
) -> Iterator[tuple[nodes.Node, nodes.Node | None]]:
    yield node, parent
    for child in node.iter_child_nodes():
        yield from _walk(child, node)


def classify(tree: nodes.Template, names: frozenset[str]) -> dict[str, Use] | None:
    """How the template uses each of ``names``; None when it does something not modelled."""
    uses: dict[str, Use] = {}
    for node, parent in _walk(tree, None):
        if not isinstance(node, _MODELLED):
            return None
        if isinstance(node, nodes.Filter) and node.name in _IMPURE_FILTERS:
            return None
        if not isinstance(node, nodes.Name) or node.ctx != "load" or node.name not in names:
            continue
        if isinstance(parent, nodes.Output):
            use = Use.PRINTED
        elif isinstance(parent, nodes.If) and parent.test is node:
            use = Use.TESTED
        else:
            use = Use.STEERING
        uses[node.name] = max(uses.get(node.name, use), use, key=lambda u: u.value)
    return uses


def _key(value: object) -> object:
    # 1, 1.0 and True are equal dict keys but print differently.
    return value if type(value) is str else (type(value), repr(value))


class _Skeleton(NamedTuple):
    """The text for one shape as a %-format, and the fields to fill it with, in order."""

    text: str
    values: Callable[[Mapping[str, object]], tuple[object, ...]]


def _getter(names: list[str]) -> Callable[[Mapping[str, object]], tuple[object, ...]]:
    if len(names) == 1:  # itemgetter of one name returns the value, not a 1-tuple
        (name,) = names
        return lambda fields: (fields[name],)
    return itemgetter(*names)  # type: ignore[return-value]


class SkeletonTemplate:
    """A compiled Jinja template plus its skeletons, keyed by the values that shape it."""

    def __init__(self, environment: Environment, source: str, names: frozenset[str]) -> None:
        self.template: Template = environment.from_string(source)
        uses = None
        if environment.finalize is None and not environment.autoescape and _MARK not in source:
            uses = classify(environment.parse(source), names)
        self.fast = uses is not None
        uses = uses or {}
        self._tested = tuple(sorted(n for n, u in uses.items() if u is Use.TESTED))
        self._steering = tuple(sorted(n for n, u in uses.items() if u is Use.STEERING))
        self._printed = tuple(sorted(n for n, u in uses.items() if u is not Use.STEERING))
        self._skeletons: dict[tuple[object, ...], _Skeleton] = {}

    def render(self, fields: Mapping[str, object]) -> str:
        """The template rendered for ``fields`` — by filling a skeleton where possible."""
        if not self.fast:
            return self.template.render(fields)
        try:
            key = (
                *[True if fields[n] else _key(fields[n]) for n in self._tested],
                *[_key(fields[n]) for n in self._steering],
            )
            skeleton = self._skeletons.get(key)
            if skeleton is None:
                skeleton = self._build(fields, key)
            # %s prints str(value), exactly as Jinja prints a value.
            return skeleton.text % skeleton.values(fields)
        except (KeyError, TypeError):
            # A missing field (Jinja reports it properly) or a value that cannot key the cache.
            return self.template.render(fields)

    def _build(self, fields: Mapping[str, object], key: tuple[object, ...]) -> _Skeleton:
        context = dict(fields)
        for n in self._steering:
            if _MARK in str(fields[n]):
                raise TypeError("a steering value contains the placeholder mark")
        for i, n in enumerate(self._printed):
            if n in self._tested and not fields[n]:
                continue  # a falsy tested value prints as itself: the skeleton is keyed on it
            context[n] = f"{_MARK}{i}{_MARK}"
        text = self.template.render(context).replace("%", "%%")
        order = [self._printed[int(i)] for i in _PLACEHOLDER.findall(text)]
        skeleton = _Skeleton(_PLACEHOLDER.sub("%s", text), _getter(order) if order else _none)
        if len(self._skeletons) >= _CACHE_LIMIT:
            self._skeletons.clear()
        self._skeletons[key] = skeleton
        return skeleton


def _none(fields: Mapping[str, object]) -> tuple[object, ...]:
    return ()
