"""The README's layout table names every module, and every module opens with one line that says its job."""

from __future__ import annotations

import ast

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "mnist_lit"


def layout_section() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    return readme[readme.index("## Layout") :]


def test_the_layout_table_names_every_module_in_its_folders_row() -> None:
    rows = {line.split("|")[1].strip(): line for line in layout_section().splitlines() if line.startswith("| `")}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        folder = f"`{path.parent.relative_to(REPO_ROOT).as_posix()}/`"
        assert folder in rows, f"the layout table has no row for {folder}"
        assert f"`{path.name}`" in rows[folder], f"{folder}'s row does not name {path.name}"


def test_every_module_opens_with_one_line_that_says_its_job() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{path.relative_to(REPO_ROOT)} has no docstring"
        first = docstring.splitlines()[0]
        assert first.endswith(".") and len(first) <= 120, f"{path.relative_to(REPO_ROOT)}: {first!r}"
