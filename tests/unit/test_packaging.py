"""Installed names: flows/ and tasks/ install as rasteret_flows and rasteret_tasks, infra/ not at all."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = {"rasteret_core": "rasteret_core", "rasteret_demo": "rasteret_demo", "rasteret_flows": "flows",
             "rasteret_tasks": "tasks"}
"""Installed package -> repository folder (setup.py)."""


def _imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def _sources() -> list[Path]:
    folders = [*INSTALLED.values(), "infra", "bench", "tests"]
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_nothing_imports_the_folder_names_of_installed_packages():
    """``from tasks import ...`` works in the repository only; installed, the package is ``rasteret_tasks``."""
    offenders = {str(p.relative_to(ROOT)): sorted(_imported_top_levels(p) & {"flows", "tasks"}) for p in _sources()}
    assert not {k: v for k, v in offenders.items() if v}


def test_installed_packages_do_not_import_infra_or_tests():
    """infra/, bench/ and tests/ are not installed: an installed package importing them breaks a wheel install."""
    installed = [p for folder in INSTALLED.values() for p in (ROOT / folder).rglob("*.py")]
    offenders = {str(p.relative_to(ROOT)): sorted(_imported_top_levels(p) & {"infra", "bench", "tests"})
                 for p in installed}
    assert not {k: v for k, v in offenders.items() if v}


@pytest.mark.parametrize(("package", "folder"), sorted(INSTALLED.items()))
def test_installed_names_are_the_repository_folders(package, folder):
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed: make install"
    assert Path(spec.origin).resolve() == ROOT / folder / "__init__.py"


def test_version_comes_from_the_package_metadata():
    import rasteret_core

    assert rasteret_core.__version__ == importlib.metadata.version("rasteret")


def test_demo_without_its_extra_names_the_extra(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from rasteret_flows.cli import app

    monkeypatch.setitem(sys.modules, "rasterio", None)  # as if rasterio were not installed
    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "demo")])
    assert result.exit_code == 19  # a missing optional extra (the exit codes of rasteret_flows.cli)
    assert 'the demo needs rasterio: pip install "rasteret[demo]"' in result.output
    assert not (tmp_path / "demo").exists()
