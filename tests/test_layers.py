"""The import layering: front ends on top, `settings` and `errors` at the bottom, no cycles.

The graph is read from the code with `ast`, so it sees every import a module can make: module-level ones,
those inside functions (kept lazy for start-up time, still a dependency) and those under TYPE_CHECKING.
Importing a submodule also runs its parent packages' `__init__`; those implicit edges are left out, as
import-linter does, since a package's `__init__` re-exports from below it by design.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nstdiff", "extensions", "ui")

# Module prefix -> layer; the longest matching prefix wins, a module may import only from its own layer or below.
# A dotted prefix with `*` matches any one name there (each extension).
LAYERS = {
    # front ends
    "nstdiff.__main__": 8, "nstdiff.commands": 8, "extensions.*.cli": 8,
    "extensions.*.tab": 8, "ui": 8,
    # the Python API's facade, and what front ends share above the executor
    "nstdiff": 7, "nstdiff.library.previews": 7,
    # executor and routing
    "nstdiff.executor": 6, "nstdiff.routing": 6, "nstdiff.library.route": 6,
    "nstdiff.distributed": 6,  # the executor for a Ray cluster, and the choice between it and the local one
    # training loops: they run methods' building blocks and are started by the executor
    "nstdiff.training": 5,
    # methods, one file each, with their shared base classes
    "nstdiff.methods": 4, "extensions.*.method": 4,
    "extensions.video.frames": 4, "extensions.video.temporal": 4,  # video's own: they run methods
    # the registry: the contract methods implement and register into (it loads them by name, not by import)
    "nstdiff.registry": 3,
    # shared services
    "nstdiff.models": 2, "nstdiff.controls": 2, "nstdiff.diffusion": 2, "nstdiff.loras": 2, "nstdiff.kohya": 2,
    "nstdiff.store": 2, "nstdiff.losses": 2, "nstdiff.losses_mrf": 2, "nstdiff.pyramid": 2, "nstdiff.optimise": 2,
    "nstdiff.library": 2, "nstdiff.training.background": 2, "nstdiff.training.lora_data": 2,
    "nstdiff.training.fast_style_data": 2, "extensions": 2,
    # requests, results and what a run carries (with the small preview pictures it sends)
    "nstdiff.schema": 1, "nstdiff.context": 1, "nstdiff.preview": 1, "extensions.*.schema": 1,
    # the bottom: files and memory checks that need nothing but the settings
    "nstdiff.imageio": 0, "nstdiff.memory": 0, "nstdiff.settings": 0, "nstdiff.errors": 0, "nstdiff.version": 0,
}

# Edges allowed against the map, each with its reason. Keep this short; fix the code rather than add here.
EXEMPT: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its file: `from a import b` means `a.b` when that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def layer_of(module: str) -> int:
    parts = module.split(".")
    best, best_length = None, -1
    for prefix, layer in LAYERS.items():
        pattern = prefix.split(".")
        matches = len(pattern) <= len(parts) and all(p in ("*", q) for p, q in zip(pattern, parts))
        if matches and len(pattern) > best_length:
            best, best_length = layer, len(pattern)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{source} (layer {layer_of(source)}) -> {target} (layer {layer_of(target)})"
                  for source, targets in graph.items() for target in targets
                  if layer_of(target) > layer_of(source) and (source, target) not in EXEMPT)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def cycle_edges(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    members = set(component)
    return sorted(f"{s} -> {t}" for s in component for t in graph[s] if t in members)


def test_every_module_has_a_layer():
    for module in all_modules():
        layer_of(module)


def test_no_import_goes_up_a_layer():
    edges = upward_edges(import_graph())
    assert not edges, "imports from a higher layer:\n" + "\n".join(edges)


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n\n".join("\n".join(cycle_edges(graph, c)) for c in found)


def test_exemptions_are_still_needed():
    graph = import_graph()
    stale = [edge for edge in EXEMPT if edge[1] not in graph.get(edge[0], set())]
    assert not stale, f"exempt edges no longer in the code: {stale}"
