"""The rules of the code's layout that a reader relies on."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))
MODULES = sorted((ROOT / "skltr").rglob("*.py"))


def _imported_modules(path):
    """The absolute module names ``path`` imports (each ``from`` target, whole)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.name)
def test_benchmarks_use_the_public_api_only(path):
    # What a benchmark measures is what a user can write: no private module
    # of skltr (one whose dotted name has a part starting with "_").
    private = [
        name
        for name in _imported_modules(path)
        if name.split(".")[0] == "skltr"
        and any(part.startswith("_") for part in name.split(".")[1:])
    ]
    assert not private, f"{path.name} imports private skltr names: {private}"


@pytest.mark.parametrize(
    "path", MODULES, ids=lambda path: str(path.relative_to(ROOT / "skltr"))
)
def test_every_module_states_its_concern_first(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{path} has no module docstring saying what it holds"
    assert docstring.splitlines()[0].strip(), f"{path}'s docstring starts empty"
