"""The layout holds: imports point one way (flows -> etl and fleet runtime -> config, errors, names),
the lab stays out of the installed package, and no module grows past what a reader can hold."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GROUND = {"flows", "flows.config", "flows.errors", "flows.limits", "flows.names"}
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _allowed(module: str, imported: str) -> bool:
    """Whether `module` may import `imported`, by layer."""
    if imported.split(".")[0] not in ("flows", "lab", "bench", "tests", "cli", "cli_fleet"):
        return True
    if imported in GROUND:
        return True
    if module in GROUND:
        return False
    if module.startswith("flows.etl"):
        return imported.startswith("flows.etl")
    if module.startswith("flows.fleet"):
        return imported.startswith("flows.fleet")
    if module.startswith("flows.demo"):
        return imported.startswith("flows")
    # the thin flows and their wiring: down into etl and the fleet runtime, and each other
    return imported.startswith("flows") and not imported.startswith("flows.demo")


@pytest.mark.parametrize("path", _sources("flows"), ids=lambda p: _module(p))
def test_imports_point_down(path: Path) -> None:
    module = _module(path)
    upward = sorted(i for i in _imports(path) if not _allowed(module, i))
    assert not upward, f"{module} imports from a layer above it or beside it: {upward}"


def test_the_table_step_has_no_prefect_import() -> None:
    offenders = [
        _module(p) for p in _sources("flows/etl") if any(i.startswith("prefect") for i in _imports(p))
    ]
    assert not offenders


def test_nothing_installed_imports_the_lab_benchmarks_or_tests() -> None:
    for path in [*_sources("flows"), ROOT / "cli.py"]:
        bad = [i for i in _imports(path) if i.split(".")[0] in ("lab", "bench", "tests")]
        assert not bad, f"{_module(path)} imports {bad}"
    for path in _sources("tests"):
        assert not [i for i in _imports(path) if i.split(".")[0] == "bench"], f"{path} imports bench/"


def test_the_lab_is_not_packaged() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    included = setup["options.packages.find"]["include"].split()
    assert included == ["flows", "flows.*"]


@pytest.mark.parametrize(
    "path", [ROOT / "cli.py", *_sources("flows"), *_sources("lab")], ids=lambda p: str(p.relative_to(ROOT))
)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"
