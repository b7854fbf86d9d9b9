"""Garden's imports point down: a check over the source (ast, no imports run) that no module
imports one of a higher layer and no modules import each other in a circle, lazy imports inside
functions included (an arrow is an arrow, however late it is drawn).

Layers, low to high: what a lower one imports never depends on what a higher one holds.
KNOWN lists each arrow the refactoring issue ("The house, third round") still has to remove; an
entry that no longer occurs fails the test, so the list only shrinks."""

import ast
import os

from conftest import ROOT

LAYERS = [
    {"errors", "signature_names", "native_output", "cache", "answers", "yaml_files"},
    {"registry", "config", "run_folder", "losses", "metrics", "optimizers", "text_family"},
    {"data", "models"},
    {"tasks", "generate", "resolve"},  # resolve: configs completed from the files they name
    {"train", "run"},
    {"distill", "sweep"},  # commands built on the trainer
    {"experiments", "export"},  # loaded like plugins (registry.load_all)
    {"cli"},  # parses and dispatches to every command
]
PACKAGES = {"garden": "garden", "garden.experiments": "experiments", "garden.export": "export"}
KNOWN: dict[tuple[str, str], str] = {}  # (importer, imported): what removes it


def modules() -> dict[str, str]:
    """Module name -> source path, for garden/, experiments/ and export/."""
    found = {}
    for package, folder in PACKAGES.items():
        top = os.path.join(ROOT, folder)
        for directory, folders, files in os.walk(top):
            folders[:] = [f for f in folders if f != "__pycache__"]
            for file in (f for f in files if f.endswith(".py")):
                parts = os.path.relpath(os.path.join(directory, file), top)[:-3].split(os.sep)
                parts = parts[:-1] if parts[-1] == "__init__" else parts
                found[".".join([package, *parts])] = os.path.join(directory, file)
    return found


def imports(name: str, path: str, known: dict) -> set[str]:
    """The modules of `known` that module `name` imports, anywhere in its source but under
    `if TYPE_CHECKING:` (annotations only, never run)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found, nodes = set(), [ast.parse(open(path).read())]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes.extend(node.orelse)
            continue
        nodes.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: package.count(".") + 2 - node.level]
                base = ".".join([*parents, *filter(None, [base])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def unit(name: str) -> str:
    return name.split(".")[1] if name.count(".") else name


def layer(name: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if unit(name) in units)


def test_every_module_has_a_layer_and_imports_point_down():
    known = modules()
    unplaced = sorted({unit(n) for n in known if n != "garden" and not any(unit(n) in u for u in LAYERS)})
    assert not unplaced, f"place these in LAYERS: {unplaced}"
    upward = {
        (name, target)
        for name, path in known.items()
        if name != "garden"
        for target in imports(name, path, known)
        if target != "garden" and unit(target) != unit(name) and layer(target) > layer(name)
    }
    assert upward - set(KNOWN) == set(), "imports of a higher layer"
    assert set(KNOWN) - upward - {pair for pair in KNOWN if layer(pair[1]) <= layer(pair[0])} == set(), (
        "KNOWN arrows that no longer occur: remove them from the list"
    )


def test_no_modules_import_each_other_in_a_circle():
    known = modules()
    graph = {
        name: {t for t in imports(name, path, known) if t != "garden" and (name, t) not in KNOWN}
        for name, path in known.items()
    }
    assert [sorted(c) for c in strongly_connected(graph) if len(c) > 1] == []


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components of `graph` (node -> the nodes it points to)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found
