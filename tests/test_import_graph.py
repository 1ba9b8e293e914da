"""The modules of aveyb import each other without a circle at module level.

Imports inside functions are deliberate (optional dependencies, keeping ``import aveyb`` and the
CLI free of torch) and are not followed. A submodule's import of its own package (``from
aveyb.tasks import hub`` inside ``aveyb.tasks.sources``) is how Python loads a package, not a
circle, and is not counted either.
"""

import ast
import pathlib

import aveyb

SRC = pathlib.Path(aveyb.__file__).parent.parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(path: pathlib.Path, name: str, modules: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    stack = list(ast.parse(path.read_text()).body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([node.module] if node.module else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(base)
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found & modules if m != name and not name.startswith(m + ".")}


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in (SRC / "aveyb").rglob("*.py")}
    return {name: _module_level_imports(path, name, set(paths)) for name, path in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, done = [], set()

    def visit(module, path):
        if module in path:
            cycles.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for dep in sorted(graph[module]):
            visit(dep, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return cycles


def test_no_module_level_import_cycle_in_aveyb():
    graph = _import_graph()
    assert len(graph) > 50 and "aveyb.model.modeling_aveyb" in graph
    assert {"aveyb.tasks.sources", "aveyb.tasks.task"} <= graph["aveyb.tasks.registry"]  # edges are read
    assert "aveyb.tasks" not in graph["aveyb.tasks.sources"]  # its own package is not an edge
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
