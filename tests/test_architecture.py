"""The layering of DESIGN.md, checked: nothing imports upward, only exchange speaks HTTP,
only policies touches OpenDP."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["schemas", "policies", "nodes", "exchange"]
HTTP = {"fastapi", "starlette", "httpx", "httpx2", "uvicorn", "http_message_signatures"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_upward(layer: str) -> None:
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & above)
        for path in modules(layer)
        if imported_roots(path) & above
    }
    assert offenders == {}, f"{layer} imports a layer above it"


@pytest.mark.parametrize("layer", ["schemas", "policies", "nodes"])
def test_only_exchange_speaks_http(layer: str) -> None:
    offenders = [str(p.relative_to(ROOT)) for p in modules(layer) if imported_roots(p) & HTTP]
    assert offenders == []


def test_only_policies_imports_opendp() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for layer in ("schemas", "nodes", "exchange")
        for p in modules(layer)
        if "opendp" in imported_roots(p)
    ]
    assert offenders == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from exchange.api.app import create_app\nimport nodes.tables\n")
    assert imported_roots(bad) == {"exchange", "nodes"}
