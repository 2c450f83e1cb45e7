"""The package's architecture, checked: layers import only downward, no import cycles, no
module imports another module's private name (see docs/architecture.md).

Static (the source is parsed, nothing is imported), so it also sees imports inside
functions -- the lazy imports that keep ``import hpcproc`` cheap are imports all the same.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from support import SERIAL_ONLY

pytestmark = SERIAL_ONLY

ROOT = pathlib.Path(__file__).resolve().parent.parent / "hpcproc"

#: Modules that import nothing from hpcproc but each other: any layer may use them.
PURE = {"hpcproc._version", "hpcproc.errors", "hpcproc._units", "hpcproc._faults",
        "hpcproc._lazy", "hpcproc._interrupt", "hpcproc.memory",
        "hpcproc.partition", "hpcproc.observe.phases", "hpcproc.observe.log",
        "hpcproc.quality.rules", "hpcproc.io.cf"}

#: Layer of every other module, by its longest matching prefix. A module may import
#: modules of lower layers, and modules of its own package.
LAYERS = {
    "hpcproc.comm": 1, "hpcproc.agreement": 1.05, "hpcproc.abort": 1.05,
    "hpcproc.array": 1.1, "hpcproc.collectives": 1.1,
    "hpcproc._redistribute": 1.1, "hpcproc.table": 1.2,
    "hpcproc.observe": 2,
    "hpcproc.io": 3,
    "hpcproc.kernels": 4,
    "hpcproc.checkpoint": 5,
    "hpcproc.compute": 6, "hpcproc.shuffles": 6, "hpcproc.quality": 6, "hpcproc.synthetic": 6,
    "hpcproc.cli": 9, "hpcproc.__main__": 10,
}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str):
    """``(imported module, imported name or None, line)`` of every hpcproc import."""
    tree = ast.parse(MODULES[name].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hpcproc"):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(name).split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("hpcproc"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # `from package import module`
                    yield sub, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def _layer(name: str) -> float | None:
    if name in PURE:
        return 0
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len,
               default=None)
    return None if best is None else LAYERS[best]


def _top_package(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2])


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if m != "hpcproc" and _layer(m) is None]
    assert not missing, f"modules without a layer (add them to LAYERS or PURE): {missing}"


def test_pure_modules_import_only_pure_modules():
    bad = [(m, t, line) for m in PURE for t, _, line in _imports(m) if t not in PURE]
    assert not bad, f"a 'pure' module imports a layer: {bad}"


def test_layers_import_only_downward():
    bad = []
    for mod in MODULES:
        if mod == "hpcproc":
            continue  # the package's lazy exports name every layer
        for target, _, line in _imports(mod):
            if target == "hpcproc":
                continue  # `from .. import __version__`, checked by the pure rule
            same = _top_package(target) == _top_package(mod)
            if not same and _layer(target) >= _layer(mod) and _layer(target) != 0:
                bad.append(f"{mod}:{line} (layer {_layer(mod)}) imports {target} "
                           f"(layer {_layer(target)})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != "hpcproc"}
             for m in MODULES if m != "hpcproc"}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(nxt_ := node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[nxt_] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_modules():
    """A name starting with ``_`` never crosses a module boundary. (Underscore *modules*
    are a package's internals; other packages use only their public names.)"""
    bad = [f"{mod}:{line} imports the private name {target}.{name}"
           for mod in MODULES for target, name, line in _imports(mod)
           if name is not None and name.startswith("_") and name != "__version__"]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_module_lists_are_real(module):
    assert module in MODULES


def test_cli_read_methods_match_the_io_layer():
    from hpcproc.cli.common import READ_METHODS
    from hpcproc.io.plan import METHODS
    assert READ_METHODS == METHODS
