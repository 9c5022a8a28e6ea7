"""The layer rule: imports go downward only (pipelines → connectors/transforms/expectations/warehouse →
config)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What each layer may import from the project (itself always allowed).
ALLOWED = {
    "config": set(),
    "connectors": {"config"},
    "transforms": {"config"},
    "expectations": {"config", "transforms"},
    "warehouse": {"config", "transforms"},
    "pipelines": {"config", "connectors", "transforms", "expectations", "warehouse"},
}


def project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


def test_every_layer_imports_only_downward() -> None:
    violations = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            for imported in project_imports(path) - allowed - {layer}:
                violations.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert violations == []


def test_only_pipelines_imports_prefect() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for layer in ALLOWED
        if layer != "pipelines"
        for p in (ROOT / layer).rglob("*.py")
        if "prefect" in {n.split(".")[0] for n in _all_modules(p)}
    ]
    assert offenders == []


def _all_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
    return mods


def test_rule_detects_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from pipelines.run import run_sync\nimport warehouse\n", encoding="utf-8")
    assert project_imports(bad) == {"pipelines", "warehouse"}
