"""Import cycles among the package's modules, counting imports inside functions.

    python -m progan_tf.importcheck          # prints the cycles; exit status 1 if there is one

A cycle hidden in a function-local import still ties the modules together: neither
can be understood, tested or moved without the other. This reads the source
(``ast``), imports nothing, and reports each strongly connected group of modules.
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Dict, List, Set

PACKAGE = "progan_tf"


def package_modules(package_dir: str, package: str = PACKAGE) -> Dict[str, str]:
    """``{dotted module name: source path}`` of every module under ``package_dir``."""
    modules = {}
    for directory, _, files in os.walk(package_dir):
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(directory, name), package_dir)[:-len(".py")].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            modules[".".join([package, *rel])] = os.path.join(directory, name)
    return modules


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Set[str]:
    """Every dotted name an import statement anywhere in ``tree`` may refer to (``from a import b``: a and a.b)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: from the module's package, one level up per extra dot
                parts = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(parts[:len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def _owning_module(name: str, modules: Dict[str, str]):
    """The module ``name`` is or lies in (``pkg.mod.func`` -> ``pkg.mod``), or None outside the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    """``{module: modules it imports}`` within the package. A package's own ``__init__`` is not an edge
    of its submodules (importing ``pkg.sub`` runs ``pkg`` first, but ``pkg`` need not import ``sub``)."""
    graph = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        is_package = os.path.basename(path) == "__init__.py"
        targets = {_owning_module(n, modules) for n in _imported_names(tree, module, is_package)}
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm), sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def package_cycles(package_dir: str = os.path.dirname(os.path.abspath(__file__))) -> List[List[str]]:
    return find_cycles(import_graph(package_modules(package_dir)))


def main() -> int:
    cycles = package_cycles()
    for cycle in cycles:
        print("import cycle: " + " <-> ".join(cycle))
    print(f"{len(cycles)} import cycle(s) in {PACKAGE}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
