"""Facts stated once stay stated once (issue 21): a repeat that comes back fails here, naming where.

- Report-type facts (DAG id, Asset name and URI, per-type setting names) live in
  pipeline/report_types.py: no source rebuilds them with an f-string, a ``.format`` template or
  ``getattr(obj, f"...")``, and no module of the package (include/, plugins/) spells one of them
  out as a string of its own (tools and benchmarks may name the DAG they drive).
- The report tables are read through schema.report_tables: nothing else builds a MetaData
  (``build_metadata``) or prefixes a table name with its schema (``f"{schema}."``).
- A function does not import again a module its file already imports at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from cdr_reports.pipeline.report_types import REPORTS

REPO = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("include", "plugins", "dags", "devtools")
PACKAGE_ROOTS = ("include", "plugins")
REPORT_TYPES_MODULE = REPO / "include" / "cdr_reports" / "pipeline" / "report_types.py"
SCHEMA_MODULE = REPO / "include" / "cdr_reports" / "pipeline" / "schema.py"


def sources() -> Iterator[tuple[Path, ast.Module]]:
    for root in SOURCE_ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"


def fstring_shape(node: ast.JoinedStr) -> str:
    """An f-string with each replacement field written `{}`: f"cdr_{t}_report" -> "cdr_{}_report"."""
    return "".join(str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values)


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes (prose may name a DAG)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_no_module_rebuilds_a_report_type_fact():
    facts = {
        value: f"{row.name}.{field}"
        for row in REPORTS.values()
        for field, value in (
            ("dag_id", row.dag_id),
            ("asset_name", row.asset_name),
            ("asset_uri", row.asset_uri),
            ("slices_field", row.slices_field),
            ("emails_field", row.emails_field),
        )
    }
    repeats = []
    for path, tree in sources():
        if path == REPORT_TYPES_MODULE:
            continue
        if "cdr_{" in path.read_text():
            repeats.append(f"{path.relative_to(REPO)}: a `cdr_{{...}}` template")
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and "cdr_{}" in fstring_shape(node):
                repeats.append(f"{where(path, node)}: f-string {fstring_shape(node)!r}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                if node.value in facts and path.relative_to(REPO).parts[0] in PACKAGE_ROOTS:
                    repeats.append(f"{where(path, node)}: {node.value!r} is report_types {facts[node.value]}")
                if "x-cdr-reports://" in node.value:
                    repeats.append(f"{where(path, node)}: an Asset URI ({node.value!r})")
    assert not repeats, "read these from pipeline/report_types.py:\n" + "\n".join(repeats)


def test_no_settings_name_is_built_for_getattr():
    builders = []
    for path, tree in sources():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr")
                and any(isinstance(arg, (ast.JoinedStr, ast.BinOp)) for arg in node.args[1:2])
            ):
                builders.append(f"{where(path, node)}: {ast.unparse(node)}")
    assert not builders, "name the field in pipeline/report_types.py (or config.Settings) instead:\n" + "\n".join(
        builders
    )


def test_report_tables_are_read_through_the_one_accessor():
    repeats = []
    for path, tree in sources():
        if path == SCHEMA_MODULE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name == "build_metadata":
                    repeats.append(f"{where(path, node)}: {ast.unparse(node)}")
            if isinstance(node, ast.JoinedStr) and fstring_shape(node) == "{}.":
                repeats.append(f"{where(path, node)}: {ast.unparse(node)} (a schema prefix)")
    assert not repeats, "use cdr_reports.pipeline.schema.report_tables(schema):\n" + "\n".join(repeats)


def top_level_modules(tree: ast.Module) -> set[str]:
    modules = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_no_function_imports_again_what_its_module_imports_at_the_top():
    again = []
    for path, tree in sources():
        top = top_level_modules(tree)
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    again += [f"{where(path, node)}: import {a.name}" for a in node.names if a.name in top]
                elif isinstance(node, ast.ImportFrom) and node.module in top:
                    again.append(f"{where(path, node)}: from {node.module} import ...")
    assert not again, "already imported at the top of the file:\n" + "\n".join(sorted(set(again)))


def test_the_checks_see_what_they_look_for():
    """The scans above find the idioms they forbid (so a passing scan is not a blind one)."""
    tree = ast.parse(
        "import os\n"
        "def f(t, s, schema):\n"
        "    import os\n"
        '    getattr(s, f"extract_slices_{t}")\n'
        "    build_metadata(schema)\n"
        '    return f"cdr_{t}_report", f"{schema}."\n'
    )
    shapes = {fstring_shape(n) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)}
    assert {"cdr_{}_report", "{}.", "extract_slices_{}"} <= shapes
    assert "os" in top_level_modules(tree)
    assert sum(isinstance(n, ast.Call) and ast.unparse(n.func) == "getattr" for n in ast.walk(tree)) == 1
    assert {path.relative_to(REPO).parts[0] for path, _ in sources()} == set(SOURCE_ROOTS)
