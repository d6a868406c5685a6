"""Imports go downward only: tools -> engine API -> actors -> engine storage / protocol.

Read from the source with ``ast`` (function-local imports included), so a layer
that loops back fails here and not in a review.  Storage modules import no zmq
or multiprocess: they run in one process, in tests and in every actor alike.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
API_MODULES = {"engine/__init__.py", "engine/api.py", "engine/client.py", "engine/jet.py"}
LAYERS = ["storage", "protocol", "actors", "api", "tools"]
# What each layer may import from the project (itself included).
ALLOWED = {
    "storage": {"storage"},
    "protocol": {"protocol", "storage"},  # errors live with the storage code
    "actors": {"actors", "protocol", "storage"},
    "api": {"api", "actors", "protocol", "storage"},
    "tools": {"tools", "api", "actors", "protocol", "storage"},
}
FORBIDDEN_IN_STORAGE = {"zmq", "multiprocess", "multiprocessing"}


def _layer(relative: str) -> str:
    if relative in API_MODULES:
        return "api"
    return {"engine": "storage", "protocol": "protocol", "actors": "actors", "tools": "tools"}[
        relative.split("/")[0]
    ]


def _module_layer(dotted: str) -> str | None:
    """The layer of an imported jetstore module; None for anything outside the project."""
    parts = dotted.split(".")
    if parts[0] != "jetstore" or len(parts) < 2:
        return None
    if parts[1] == "engine" and (len(parts) == 2 or parts[2] in ("api", "client", "jet")):
        return "api"
    return {"engine": "storage", "protocol": "protocol", "actors": "actors", "tools": "tools"}[
        parts[1]
    ]


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    package = "jetstore." + ".".join(path.parent.relative_to(ROOT).parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                module = f"{base}.{node.module}" if node.module else base
                if node.module is None:  # from . import a, b: each is a module
                    found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
                    continue
            else:
                module = node.module
            found.append((node.lineno, module))
    return found


SOURCES = sorted(
    p.relative_to(ROOT).as_posix()
    for folder in ("engine", "protocol", "actors", "tools")
    for p in (ROOT / folder).rglob("*.py")
)


@pytest.mark.parametrize("relative", SOURCES)
def test_imports_only_go_downward(relative):
    layer = _layer(relative)
    wrong = []
    for line, module in _imports(ROOT / relative):
        target = _module_layer(module)
        if target is not None and target not in ALLOWED[layer]:
            wrong.append(f"{relative}:{line} ({layer}) imports {module} ({target})")
        if layer == "storage" and module.split(".")[0] in FORBIDDEN_IN_STORAGE:
            wrong.append(f"{relative}:{line} (storage) imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_loop_back():
    assert _module_layer("jetstore.engine.api") == "api"
    assert _module_layer("jetstore.engine") == "api"
    assert _module_layer("jetstore.engine.storage") == "storage"
    assert _module_layer("jetstore.actors.runtime") == "actors"
    assert "api" not in ALLOWED["actors"] and "actors" not in ALLOWED["storage"]
