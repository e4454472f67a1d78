"""The core stays platform- and storage-free: bot/ imports no adapter, no platform SDK and
no storage backend (it talks to the Store port; backends are found by entry point), and
its code names no platform (each registers what the core needs of it).

The layer order itself is import-linter's ``[tool.importlinter]`` contracts (``lint-imports``
in .ci/run); here, what those contracts cannot say: which module-level cycle there is, and
the short list of what an adapter may import from bot.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from functools import cache
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "adapters", "storage")
#: an adapter translates between its platform and the core's events, hands them to the
#: intake and reads the command specs; it never reaches past them into the flow
ADAPTERS_MAY_IMPORT = ("bot.core", "bot.kit", "bot.flow.commands", "bot.flow.intake")
FORBIDDEN = ("adapters", "telegram", "slack_bolt", "slack_sdk", "slack", "discord", "storage",
             "sqlite_utils", "sqlite3", "psycopg", "psycopg_pool")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_core_module_imports_a_platform() -> None:
    offenders = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        for name in imported_modules(path):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_loading_every_core_module_loads_no_platform_sdk() -> None:
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts)
               for p in (ROOT / "bot").rglob("*.py") if p.name != "__main__.py"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == ""


@cache
def import_graph() -> grimp.ImportGraph:
    """Every import statement in our packages, those inside functions and
    ``TYPE_CHECKING`` blocks included (a cycle hidden in a function is still a cycle)."""
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def import_cycles() -> list[list[str]]:
    """One shortest cycle through each import that has a way back to its importer."""
    graph = import_graph()
    cycles: dict[frozenset[str], list[str]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            way_back = graph.find_shortest_chain(importer=imported, imported=importer)
            if way_back is not None:
                cycle = [importer, *way_back]
                cycles.setdefault(frozenset(cycle), cycle)
    return sorted(cycles.values(), key=len)


def test_no_import_cycle_anywhere() -> None:
    cycles = [" -> ".join(cycle) for cycle in import_cycles()]
    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(cycles)


def test_adapters_import_only_the_core_the_command_specs_and_the_intake() -> None:
    graph = import_graph()
    offenders = sorted(
        f"{module} imports {imported}"
        for module in graph.find_descendants("adapters")
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.split(".")[0] == "bot"
        and not any(imported == allowed or imported.startswith(allowed + ".")
                    for allowed in ADAPTERS_MAY_IMPORT)
    )
    assert offenders == []


def test_adapters_are_found_through_entry_points() -> None:
    from bot.core.platforms import adapter_factories

    assert {"telegram", "slack", "discord"} <= set(adapter_factories())


def test_stores_are_found_through_entry_points() -> None:
    from importlib.metadata import entry_points

    from bot.app.runtime import STORE_ENTRY_POINTS

    assert "sqlite" in {ep.name for ep in entry_points(group=STORE_ENTRY_POINTS)}


def test_every_adapter_file_stays_small() -> None:
    """An adapter only translates: none grows into a second core."""
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
             for p in (ROOT / "adapters").rglob("*.py")}
    assert sizes, "no adapter found"
    assert {name: n for name, n in sizes.items() if n >= 400} == {}


PLATFORM_NAMES = re.compile(r"telegram|slack|discord", re.IGNORECASE)


def docstring_positions(tree: ast.AST) -> set[tuple[int, int]]:
    """Where the docstrings of a module, its classes and functions start."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                found.add((body[0].lineno, body[0].col_offset))
    return found


def platform_names_in_code(path: Path) -> list[str]:
    """Identifiers and string literals that name a platform. Comments and docstrings may
    (they explain with a real case: "a Telegram forum topic"); code may not, or adding a
    platform would mean editing the core."""
    source = path.read_text()
    docstrings = docstring_positions(ast.parse(source))
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.NAME, tokenize.STRING) or token.start in docstrings:
            continue
        if PLATFORM_NAMES.search(token.string):
            found.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {token.string[:60]}")
    return found


def test_no_core_code_names_a_platform() -> None:
    """A platform registers what the core needs (bot.core.platforms): the core looks it up
    by the event's platform name and never spells one."""
    offenders = [hit for path in sorted((ROOT / "bot").rglob("*.py"))
                 for hit in platform_names_in_code(path)]
    assert offenders == []


def test_the_kit_imports_nothing_else_from_the_project() -> None:
    """bot/kit is the bottom layer: images, i18n, formatting and logs stand alone."""
    project = ("bot", "adapters", "storage")
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "bot" / "kit").rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] in project and not name.startswith("bot.kit")
    ]
    assert offenders == []


def test_no_function_is_longer_than_sixty_lines() -> None:
    """A function a newcomer can read on one screen; a longer one is several steps that
    deserve names of their own."""
    long = []
    for folder in ("bot", "adapters", "storage"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > 60:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                                    f"({lines} lines)")
    assert long == []
