"""The package's folders show the flow, and the imports keep to it.

The map is README's "Layout" block: one line per folder, naming every module in it. The rules
below are the arrows of the README's flow: capture -> kafka -> web and analytics, over a shared
floor (settings, frame, results, metrics, redact, logging_setup) that imports none of them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = "rtsp_kafka_mjpeg"
ROLES = ("capture", "kafka", "web", "analytics")
# role -> the roles it may import (besides the shared floor, which every module may import)
MAY_IMPORT = {"capture": {"kafka"}, "kafka": set(), "web": {"kafka"}, "analytics": {"kafka"}, "": set()}
CLI_ROLE = {"producer.py": "capture", "consumer.py": "web", "worker.py": "analytics"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def imports_of(path: Path, name: str) -> set[str]:
    """The package modules `path` imports (relative imports resolved), at any depth of the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    known = package_modules()
    return {m for m in found if m in known and m != name and m != PACKAGE}


def role_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in ROLES else ""


def layout_block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1].splitlines()


def test_every_module_is_on_the_readme_map_in_its_folder_and_every_name_there_exists() -> None:
    lines = layout_block()
    folders = sorted({p.parent for p in package_modules().values()})
    for folder in folders:
        key = f"{folder.relative_to(ROOT).as_posix()}/"
        line = next((ln for ln in lines if ln.split() and ln.split()[0] == key), None)
        assert line is not None, f"README's Layout has no line for {key}"
        stems = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        missing = sorted(s for s in stems if not re.search(rf"\b{s}\b", line))
        assert not missing, f"{key} holds {missing}, not on README's map"
        listed = set(re.findall(r"\b([a-z_]+)\b", line.split(":", 1)[1])) if ":" in line else set()
        subfolders = {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
        named_files = {w for w in listed if (folder / f"{w}.py").exists() or w in subfolders}
        assert named_files == stems | (named_files & subfolders)


@pytest.mark.parametrize("name", sorted(package_modules()))
def test_imports_only_run_down_the_flow(name: str) -> None:
    own = role_of(name)
    for target in imports_of(package_modules()[name], name):
        theirs = role_of(target)
        if theirs in (own, ""):
            continue
        assert theirs in MAY_IMPORT[own], f"{name} ({own or 'floor'}) imports {target} ({theirs}/)"


def test_the_package_has_no_import_cycle() -> None:
    modules = package_modules()
    graph = {name: imports_of(path, name) for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


@pytest.mark.parametrize("cli", sorted(CLI_ROLE))
def test_each_cli_reaches_only_its_own_role_the_transport_and_the_floor(cli: str) -> None:
    tree = ast.parse((ROOT / cli).read_text())
    used = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    roles = {role_of(m) for m in used if m.startswith(f"{PACKAGE}.")}
    assert roles <= {CLI_ROLE[cli], "kafka", ""}, f"{cli} imports from {roles}"
    assert len((ROOT / cli).read_text().splitlines()) <= 80, f"{cli} is no longer a thin CLI"
