"""The layer stays lean: runtime modules never import the official SDKs, the sandbox or CLI tools."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DIRS = [ROOT / "shared" / "qcflow", ROOT / "functions"]
FORBIDDEN_PREFIXES = ("alibabacloud_tea", "alibabacloud_ccc", "alibabacloud_qualitycheck", "alibabacloud_credentials", "darabonba", "Tea")


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_official_sdk_import_in_runtime_sources() -> None:
    offenders = []
    for folder in RUNTIME_DIRS:
        for path in folder.rglob("*.py"):
            for name in imported_names(path):
                if name.startswith(FORBIDDEN_PREFIXES):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders


def test_runtime_import_loads_no_sdk_sandbox_or_cli() -> None:
    code = (
        "import sys, qcflow.config, qcflow.credentials, qcflow.ccc, qcflow.sca, qcflow.models.events, qcflow.logs, qcflow.store;"
        "print(__import__('json').dumps(sorted(m for m in sys.modules)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    # (httpx imports click/rich for its own CLI when they are installed; the layer has neither)
    bad = [m for m in loaded if m.startswith(FORBIDDEN_PREFIXES) or m.startswith(("qcflow.tools.sandbox", "qcflow.tools.cli", "qcflow.tools.report", "uvicorn", "alibabacloud_oss_v2", "duckdb", "plotly"))]
    assert not bad, bad


def test_runtime_modules_never_import_the_tooling_folder() -> None:
    """``qcflow/tools/`` (the one folder the layer builder leaves out, by the same name) is imported by no
    runtime module, at the top or lazily: runtime code reaching into it would break in the layer."""
    from tests.test_layer import LAYER as layer  # scripts/build_layer.py, loaded once
    tooling_dir = ROOT / "shared" / "qcflow" / layer.TOOLING_PACKAGE
    assert (tooling_dir / "__init__.py").exists()
    tooling = f"qcflow.{layer.TOOLING_PACKAGE}"
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in RUNTIME_DIRS
        for path in folder.rglob("*.py")
        if tooling_dir not in path.parents
        for name in imported_names(path)
        if name == tooling or name.startswith(tooling + ".")
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("function", ["push", "harvest", "callback"])
def test_functions_do_not_define_the_typed_result_models(function: str) -> None:
    """GetResult's typed models (``qcflow.models.sca_result``) are for tools and tests: the functions read
    pages as plain dicts, and defining those models would cost every cold start several milliseconds."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'functions' / function)!r}); import index; "
        "print(__import__('json').dumps(sorted(m for m in sys.modules if m.startswith('qcflow'))))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert "qcflow.sca" in loaded and "qcflow.models.sca_result" not in loaded
