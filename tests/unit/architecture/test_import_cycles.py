"""No import cycles anywhere in ``src/aitbc`` (modules, not just the layers import-linter checks).

A cycle is found on the module graph grimp builds (the one import-linter uses), counting every import:
at module level, inside functions, and under ``if TYPE_CHECKING`` — a type-only cycle still ties two
modules together (``coordinator.matching`` ↔ ``coordinator.services`` used to be one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import grimp


def strongly_connected(nodes: Iterable[str], edges: Callable[[str], Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(edges(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges(nxt))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
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
                if len(component) > 1 or node in edges(node):
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a", "d"], "e": []}
    assert sorted(strongly_connected(graph, graph.__getitem__)) == [["a", "b", "c"], ["d"]]
    assert strongly_connected({"x": ["y"], "y": []}, {"x": ["y"], "y": []}.__getitem__) == []


def test_no_module_of_aitbc_takes_part_in_an_import_cycle() -> None:
    graph = grimp.build_graph("aitbc", cache_dir=None)
    modules = {m for m in graph.modules if m == "aitbc" or m.startswith("aitbc.")}

    def imports(module: str) -> set[str]:
        return graph.find_modules_directly_imported_by(module) & modules

    cycles = strongly_connected(modules, imports)
    assert not cycles, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)
