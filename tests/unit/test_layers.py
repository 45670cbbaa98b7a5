"""The layers of HOUSE_STYLE, read from the source: who may import whom, and no cycles.

``domain`` imports nothing of ours but ``domain``; use cases and adapters import ``domain``
and ``ports``, never an entry point, the configuration or each other's side; ``bootstrap``
wires adapters and imports no entry point; and no module of ``service`` imports itself back
through others. Every import counts — at the top, inside a function, under TYPE_CHECKING —
because each one is a dependency a reader has to follow; the source is parsed, not imported,
so this test runs even while a module is broken.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"


@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen from the importing module."""

    importer: str
    target: str
    line: int

    def __str__(self) -> str:
        path = module_path(self.importer).relative_to(SERVICE.parent)
        return f"{self.importer} imports {self.target} ({path}:{self.line})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SERVICE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_path(name: str) -> Path:
    base = SERVICE.parent.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def service_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted(SERVICE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module ``from … import`` reads from (relative imports included)."""
    if node.level == 0:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import in the module at ``path`` that names something of ``service``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):  # every statement, in functions and `if TYPE_CHECKING:` too
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, path.name == "__init__.py", node)
            # `from service.api import routes_plan` depends on the submodule, when it is one.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "service" or target.startswith("service."):
                yield Import(name, target, node.lineno)


def all_imports() -> list[Import]:
    modules = service_modules()
    known = set(modules)
    found = (imp for name, path in modules.items() for imp in imports_of(name, path, known))
    return list(dict.fromkeys(found))  # `from x import a, b` is one import of x


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# (layer, what it must not import, why) — HOUSE_STYLE "The shape for this project".
FORBIDDEN = [
    pytest.param(
        "service.domain",
        None,  # anything of service outside service.domain
        "the domain is pure: it imports nothing of ours but the domain",
        id="domain-imports-only-domain",
    ),
    pytest.param(
        "service.usecases",
        ("service.adapters", "service.api", "service.cli", "service.bootstrap", "service.config"),
        "use cases take ports as arguments and import no adapter, entry point or configuration",
        id="usecases-import-no-adapter-entry-point-or-config",
    ),
    pytest.param(
        "service.adapters",
        ("service.api", "service.cli", "service.bootstrap", "service.config", "service.usecases"),
        "adapters implement ports with what they are given; they never call inwards or outwards",
        id="adapters-import-no-entry-point-config-or-usecase",
    ),
    pytest.param(
        "service.bootstrap",
        ("service.api", "service.cli"),
        "bootstrap builds adapters for the entry points and imports none of them",
        id="bootstrap-imports-no-entry-point",
    ),
]


@pytest.mark.parametrize(("layer", "forbidden", "why"), FORBIDDEN)
def test_a_layer_imports_only_what_it_may(
    layer: str, forbidden: tuple[str, ...] | None, why: str
) -> None:
    def refused(target: str) -> bool:
        if forbidden is None:
            return not within(target, layer)
        return any(within(target, f) for f in forbidden)

    offending = [i for i in all_imports() if within(i.importer, layer) and refused(i.target)]

    assert not offending, f"{layer}: {why}. Found:\n  " + "\n  ".join(map(str, offending))


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` (iterative; no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def _one_cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module, to show the reader."""
    start = component[0]
    members = set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return component  # unreachable for a real component


def test_no_module_of_service_imports_itself_back_through_others() -> None:
    imports = all_imports()
    known = set(service_modules())
    graph: dict[str, set[str]] = {name: set() for name in known}
    lines: dict[tuple[str, str], int] = {}
    for i in imports:
        if i.target in known:
            graph[i.importer].add(i.target)
            lines.setdefault((i.importer, i.target), i.line)

    cycles = [c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph[c[0]]]

    def describe(component: list[str]) -> str:
        path = _one_cycle(component, graph)
        steps = " -> ".join(f"{a} (line {lines[(a, b)]})" for a, b in itertools.pairwise(path))
        return f"{len(component)} modules {component}; e.g. {steps} -> {path[-1]}"

    assert not cycles, "import cycles among service modules:\n  " + "\n  ".join(
        describe(c) for c in cycles
    )


def test_the_layer_rules_see_the_whole_package() -> None:
    # Guards the tests above against passing on nothing (a wrong path, an empty package).
    modules = service_modules()
    imports = all_imports()

    assert {"service.ports", "service.domain.decide", "service.api.app"} <= set(modules)
    assert any(i.importer == "service.api.app" and i.target == "service.bootstrap" for i in imports)
    # An import under TYPE_CHECKING counts: ports.py reads Invoice only for its annotations.
    assert any(
        i.importer == "service.ports" and within(i.target, "service.domain") for i in imports
    )
