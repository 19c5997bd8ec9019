"""The layering of lib/ and pages/ (docs/architecture.md): which package may import which.

Every import is read from the source (also those inside functions), so a new module or a
late import that crosses a layer fails here.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# module pattern -> the project modules and outside packages it may import (fnmatch patterns)
BASE = ["lib.errors", "lib.cells"]
ALLOWED = {
    "lib.errors": [],
    "lib.cells": [],
    "lib.changes": [],
    "lib.export": [],
    "lib.access": ["lib.errors"],
    "lib.audit": ["lib.engine.stores"],
    "lib.basemap": [],
    "lib.geonames": [],
    "lib.baselayer": ["lib.geonames"],
    "lib.icon": [],
    "lib.ingest*": [*BASE, "lib.ingest*"],
    "lib.engine*": [*BASE, "lib.engine*", "lib.ingest.schema", "lib.changes"],
    "lib.store": [*BASE, "lib.ingest*", "lib.engine.derive", "lib.engine.stores", "lib.audit",
                  "lib.changes"],
    "lib.views*": [*BASE, "lib.export", "lib.audit", "lib.basemap", "lib.baselayer", "lib.geonames",
                   "lib.ingest.schema", "lib.engine*", "lib.store",
                   "lib.views*",
                   "lib.public.snapshot", "lib.demo.geo"],
    "lib.public*": ["lib.errors", "lib.export", "lib.basemap", "lib.baselayer", "lib.public*"],
    "lib.demo*": [*BASE, "lib.ingest.schema", "lib.demo*", "lib.engine.serving", "lib.geonames"],
    "lib.warmup": [*BASE, "lib.engine*"],
    "lib.cache": ["lib.*"],
    "lib.cli": ["lib.*"],
    "lib.running": ["lib.errors", "lib.ingest.lifeline"],
    "lib.inbox": [*BASE, "lib.store", "lib.ingest*"],
    "lib.localapi": ["lib.*"],
    "shell": ["lib.access", "lib.public.i18n"],
    "pages.*": ["lib.cache", "lib.access", "lib.audit", "lib.views*", "lib.public*", "lib.errors",
                "lib.export", "lib.cells",
                "lib.engine*", "lib.ingest.schema"],
}
"""What each layer may import from the project."""

OUTSIDE = {"streamlit": ["lib.cache", "shell", "pages.*", "dashboard", "serve"],
           "duckdb": ["lib.ingest*", "lib.engine*", "lib.store", "lib.audit", "lib.views*", "lib.warmup", "lib.cache",
                      "lib.cli", "lib.demo*", "lib.inbox"],
           "ibis": ["lib.engine*", "lib.views*"],
           "psycopg": ["lib.engine.stores", "lib.store"]}
"""Outside packages that only some layers may import: only the cache touches streamlit, the public
path never touches a database, pages never run SQL."""

CONSTANTS_ONLY = {"pages.*": ["lib.engine*"]}
"""A page reads the engine's constants (widget choices) but calls none of its functions."""


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def imports(path: Path) -> dict[str, str]:
    """Every module `path` imports -> the name it is bound to (project modules resolved to their full name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.name] = a.asname or a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if node.module.startswith("lib") and _is_package(node.module) and (
                        (ROOT / Path(*full.split("."))).with_suffix(".py").exists() or _is_package(full)):
                    out[full] = a.asname or a.name  # a module of a package
                else:
                    out.setdefault(node.module, a.asname or a.name)
    return out


def _sources() -> list[Path]:
    files = sorted((ROOT / "lib").rglob("*.py")) + sorted((ROOT / "pages").glob("*.py"))
    return files + [ROOT / "dashboard.py", ROOT / "serve.py", ROOT / "shell.py"]


def _rule(table: dict[str, list[str]], name: str) -> list[str] | None:
    for pattern, allowed in table.items():
        if fnmatch.fnmatch(name, pattern):
            return allowed
    return None


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def violations(path: Path) -> list[str]:
    """What `path` imports that its layer may not."""
    me = _module_name(path)
    found = []
    for mod, bound in imports(path).items():
        top = mod.split(".")[0]
        if top == "lib" and mod != "lib":
            allowed = _rule(ALLOWED, me)
            if allowed is not None and not _matches(mod, allowed) and not mod.startswith(me + "."):
                found.append(f"{me} imports {mod}")
            constants = _rule(CONSTANTS_ONLY, me) or []
            if _matches(mod, constants) and not _matches(mod, ["lib.cells"]):
                found += [f"{me} calls {bound}.{attr}" for attr in _attributes(path, bound) if not attr.isupper()]
        elif top in OUTSIDE and not _matches(me, OUTSIDE[top]):
            found.append(f"{me} imports {top}")
    return found


def _attributes(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == name}


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_imports_only_what_its_layer_may(path):
    assert violations(path) == []


def test_every_lib_module_has_a_layer_and_a_docstring():
    for path in (ROOT / "lib").rglob("*.py"):
        name = _module_name(path)
        if name == "lib":
            continue
        assert _rule(ALLOWED, name) is not None, f"{name} belongs to no layer in ALLOWED"
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc and len(doc.split()) >= 5, f"{name} has no docstring saying what it holds"


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("lib/engine/x.py", "from lib.views import maps\n", ["lib.engine.x imports lib.views.maps"]),
    ("lib/engine/x.py", "def f():\n    import streamlit as st\n", ["lib.engine.x imports streamlit"]),
    ("lib/ingest/x.py", "from lib.engine import hotspots\n", ["lib.ingest.x imports lib.engine.hotspots"]),
    ("lib/public/x.py", "from lib import store\n", ["lib.public.x imports lib.store"]),
    ("lib/public/x.py", "import duckdb\n", ["lib.public.x imports duckdb"]),
    ("lib/views/x.py", "from lib import cache\n", ["lib.views.x imports lib.cache"]),
    ("pages/x.py", "from lib.engine import hotspots\nhotspots.hot_cells(1)\nhotspots.KINDS\n",
     ["pages.x calls hotspots.hot_cells"]),
    ("pages/x.py", "from lib import store\n", ["pages.x imports lib.store"]),
    ("lib/engine/x.py", "from lib.engine import rings\nfrom lib.ingest import schema\n", []),
])
def test_the_check_catches_a_crossing(tmp_path, monkeypatch, module, source, expected):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    path = tmp_path / module
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    for pkg in ("lib", "lib/engine", "lib/views", "lib/ingest", "lib/public"):
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    for mod in ("lib/views/maps.py", "lib/engine/hotspots.py", "lib/engine/rings.py", "lib/ingest/schema.py",
                "lib/store.py", "lib/cache.py"):
        (tmp_path / mod).touch()
    assert violations(path) == expected
