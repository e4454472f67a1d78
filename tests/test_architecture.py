"""The core stays platform- and storage-free: bot/ imports no adapter, no platform SDK and
no storage backend (it talks to the Store port; backends are found by entry point).

The layer order itself is import-linter's ``[tool.importlinter]`` contracts (``lint-imports``
in .ci/run); here, what those contracts cannot say: which module-level cycle there is, and
the short list of what an adapter may import from bot.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "adapters", "storage")
#: an adapter translates between its platform and the core's events, hands them to the
#: intake and reads the command specs; it never reaches past them into the flow
ADAPTERS_MAY_IMPORT = ("bot.core", "bot.kit", "bot.flow.commands", "bot.flow.intake")
FORBIDDEN = ("adapters", "telegram", "slack_bolt", "slack_sdk", "slack", "storage",
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

    assert {"telegram", "slack"} <= set(adapter_factories())


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
