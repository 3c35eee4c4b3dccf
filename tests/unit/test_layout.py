"""The core's layers: every import points down the layer order, and no modules import each other in a cycle."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import rasteret_core

CORE = pathlib.Path(rasteret_core.__file__).parent
LAYERS = ["errors", "settings", "io", "geo", "tiff", "table", "read", "top"]
"""From the bottom up; a module may import from its own layer or any layer before it."""
TOP = {"collection", "ingest", "registry", "torchgeo", "engine", "__init__"}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(CORE).with_suffix("").parts
    return ".".join(("rasteret_core", *parts)).removesuffix(".__init__")


def _layer(module: str) -> str:
    parts = module.split(".")[1:] or ["__init__"]
    if parts[0] in TOP:
        return "top"
    assert parts[0] in LAYERS, f"{module} is in no layer: add it to tests/unit/test_layout.py's LAYERS"
    return parts[0]


def _imports(path: pathlib.Path) -> set[str]:
    """The rasteret_core modules ``path`` imports, deferred and TYPE_CHECKING imports included."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("rasteret_core"):
                known = [f"{target}.{alias.name}" for alias in node.names
                         if (CORE / pathlib.Path(*f"{target}.{alias.name}".split(".")[1:])).with_suffix(".py").exists()
                         or (CORE / pathlib.Path(*f"{target}.{alias.name}".split(".")[1:]) / "__init__.py").exists()]
                found.update(known or [target])
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("rasteret_core"))
    found.discard(module)
    return found


GRAPH = {_module_name(p): _imports(p) for p in sorted(CORE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_layers(module):
    own = LAYERS.index(_layer(module))
    upward = sorted(t for t in GRAPH[module] if t != "rasteret_core" and LAYERS.index(_layer(t)) > own)
    # The one exception: Collection.to_torchgeo_dataset imports the optional TorchGeo layer when called.
    if module == "rasteret_core.collection":
        upward = [t for t in upward if t != "rasteret_core.torchgeo"]
    assert not upward, f"{module} ({_layer(module)}) imports from higher layers: {upward}"


def test_no_module_imports_itself_through_a_cycle():
    edges = {m: {t for t in ts if t in GRAPH and t != "rasteret_core"} for m, ts in GRAPH.items()}
    edges["rasteret_core.collection"].discard("rasteret_core.torchgeo")  # deferred, optional extra (see above)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, f"import cycles: {cycles}"


def test_every_module_says_what_it_is_for():
    for path in sorted(CORE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc.splitlines()[0]) > 20, f"{path.relative_to(CORE)} has no first line saying what it is for"


def test_importing_the_core_loads_no_heavy_optional_module():
    """A cold CLI or flow run pays only for what it uses: pandas (pulled in by pyarrow.dataset, about 1 s),
    the S3 and STAC clients and the read extras load when first used, not with ``import rasteret_core``.
    """
    heavy = ("pandas", "pyarrow.dataset", "pystac_client", "aiobotocore", "botocore", "requests", "geopandas",
             "xarray", "torch", "matplotlib", "prefect")
    code = f"import sys, rasteret_core; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"import rasteret_core loads {done.stdout.strip()}"
