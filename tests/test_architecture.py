"""The house rules of ``collector/`` (issue 12), checked on the source tree:
packages by concern, dependencies pointing one way, no import cycle, each
package used from outside only through its ``__init__`` surface, small modules.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from tests.tools import import_cycles

ROOT = Path(__file__).resolve().parent.parent / "collector"

#: Which packages each may import (besides itself and ``config``). Top:
#: http, console, cli; middle: ingest, usage, accounts, lifecycle; then gate;
#: ops and config at the bottom.
ALLOWED = {
    "http": {"ingest", "usage", "accounts", "lifecycle", "gate", "ops", "console"},
    "console": {"ingest", "usage", "accounts", "lifecycle", "gate", "ops"},
    "cli": {"http", "ingest", "usage", "accounts", "lifecycle", "gate", "ops"},
    "ingest": {"usage", "accounts", "gate", "ops"},
    "lifecycle": {"usage", "accounts", "ingest", "gate", "ops"},
    "usage": {"accounts", "gate", "ops"},
    "accounts": {"gate", "ops"},
    "gate": set(),
    "ops": set(),
    "config": set(),
    "__main__": {"cli"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import in ``path``, relative ones resolved;
    imports under ``if TYPE_CHECKING`` included (a cycle in types is a cycle)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("collector")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("collector"):
                found.append((target, [a.name for a in node.names]))
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _resolved(target: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """The collector modules an import statement loads (``from pkg import sub`` loads ``pkg.sub``)."""
    out = [target] if target in modules else []
    out += [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
    return out


def test_no_import_cycle():
    """The same walk as the shared tool ``import_cycles.py`` (copied into tests/tools)."""
    found = import_cycles.cycles(import_cycles.graph(ROOT))
    assert found == [], found


def test_dependencies_point_one_way():
    bad = []
    for m, path in _modules().items():
        own = _package(m) or m.split(".")[-1]
        for target, _ in _imports(m, path):
            dep = _package(target)
            if dep and dep != own and dep != "config" and dep not in ALLOWED.get(own, set()):
                bad.append(f"{m} imports {target}")
    assert bad == []


def test_packages_are_used_through_their_surface():
    """Outside a package, ``from collector.<pkg> import <name>`` with the name in
    ``<pkg>.__all__``; never ``collector.<pkg>.<module>`` directly."""
    bad = []
    for m, path in _modules().items():
        own = _package(m)
        for target, names in _imports(m, path):
            dep = _package(target)
            if not dep or dep == own or dep == "config" or dep == "http" and own == "cli":
                continue
            if target != f"collector.{dep}":
                bad.append(f"{m} reaches past the surface: {target}")
                continue
            surface = set(importlib.import_module(target).__all__)
            bad += [f"{m} imports {target}.{n}, not in its __all__" for n in names if n not in surface]
    assert bad == []


def test_small_modules_and_a_small_top_level():
    too_long = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if len(p.read_text().splitlines()) > 600]
    assert too_long == []
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 8, top
    for pkg in ("ingest", "gate", "accounts", "usage", "http", "cli", "ops"):
        init = ROOT / pkg / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{pkg}/__init__.py names its surface in a docstring"
