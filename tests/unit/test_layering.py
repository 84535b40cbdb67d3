"""The package's layering, read from the code: the method's pure modules stay free of GPU, tracking and
HTTP libraries, and only the stages import the miniature."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PKG = ROOT / "src/aft"
HEAVY = ("torch", "vllm", "mlflow", "httpx", "transformers", "openai")
# modules that take plain data and return plain data: unit-tested on CPU in milliseconds
PURE = sorted(
    [p for p in (PKG / "method").glob("*.py")]
    + [PKG / "eval" / f"{m}.py" for m in ("registry", "mt_bench", "report")]
)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT / "src").with_suffix("").parts).removesuffix(".__init__")


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: module_name(p))
def test_pure_modules_import_no_heavy_library_anywhere(path):
    heavy = sorted(n for n in imported(path) if n.split(".")[0] in HEAVY)
    assert heavy == [], f"{module_name(path)} imports {heavy}"


def test_pure_modules_load_no_heavy_library_transitively():
    """Importing every pure module in a fresh interpreter leaves the heavy libraries unloaded."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {[module_name(p) for p in PURE]!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted({{k.split('.')[0] for k in sys.modules}} & set({HEAVY!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_only_the_stages_import_the_miniature():
    importers = sorted(
        module_name(p)
        for p in PKG.rglob("*.py")
        if not p.is_relative_to(PKG / "miniature")
        and not p.is_relative_to(PKG / "stages")
        and any(n == "aft.miniature" or n.startswith("aft.miniature.") for n in imported(p))
    )
    assert importers == []


def test_every_concern_is_a_folder():
    """No module lies loose in src/aft: a newcomer finds each concern by its folder."""
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    folders = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert folders == {"method", "eval", "gen", "train", "miniature", "pipeline", "tools", "stages"}
