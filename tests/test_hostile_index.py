"""tests/hostile.py names every module holding hostile-input tests, so a newcomer finds them all
in one place: a new one cannot be left out of it, and it names no module that is gone."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.hostile import WHERE

ROOT = Path(__file__).resolve().parent.parent


def hostile_tests() -> dict[str, list[str]]:
    """{module path: names of its test functions that say "hostile"}, over every test module
    but this one."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path == Path(__file__).resolve():
            continue
        names = [
            node.name
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and "hostile" in node.name
        ]
        if names:
            found[path.relative_to(ROOT).as_posix()] = names
    return found


def test_every_module_with_hostile_input_tests_is_in_the_index():
    missing = {module: names for module, names in hostile_tests().items() if module not in WHERE}
    assert missing == {}, "add these modules to tests/hostile.py's WHERE"


def test_the_index_names_only_modules_that_exist():
    assert [module for module in WHERE if not (ROOT / module).is_file()] == []
