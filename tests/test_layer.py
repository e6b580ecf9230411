"""``scripts/build_layer.py`` (``make layer``): the layer zip FC unpacks under ``/opt``.

The build runs once per session, for real: pip fetches the manylinux wheels for Python 3.10
from the package index, and the zip is then checked the way FC uses it, from a clean
Python 3.10 that sees nothing but the zip's ``python/`` folder. It needs that interpreter
(pip must run under the runtime's Python, and its ``.pyc`` are the runtime's) and the
index: without either the tests skip, saying which.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_layer.py"
FUNCTIONS = ("push", "harvest", "callback")
GOAL_MB = 25.0
#: Independent of the script's own list: what must never reach FC.
NOT_RUNTIME = ("click", "rich", "uvicorn", "pygments", "pytest", "_pytest", "alibabacloud_tea", "alibabacloud_ccc",
               "alibabacloud_qualitycheck")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_layer", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_layer", module)
    spec.loader.exec_module(module)
    return module


LAYER = _script()

# pip downloads on a cold cache and two full builds: more than the default per-test timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass(frozen=True)
class Build:
    python: str  # the runtime's interpreter (3.10)
    sources: Path  # snapshot of shared/qcflow the build used
    out: Path
    zip: Path
    report: str

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.zip) as archive:
            return archive.namelist()


def _index_reachable() -> str | None:
    """Why the package index cannot be reached, or None."""
    url = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    parts = urlsplit(url)
    if parts.scheme == "file":
        return None
    try:
        socket.create_connection((parts.hostname or "pypi.org", parts.port or (443 if parts.scheme == "https" else 80)), timeout=5).close()
    except OSError as exc:
        return f"package index {parts.hostname} unreachable ({exc})"
    return None


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, check=False)


def build_into(out: Path, python: str, sources: Path) -> subprocess.CompletedProcess[str]:
    return run_script("--out", str(out), "--python", python, "--package-dir", str(sources))


@pytest.fixture(scope="session")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    try:
        python = LAYER.find_runtime_python()
    except LAYER.BuildError as exc:
        pytest.skip(f"no Python 3.10 to build the layer with: {exc}")
    reason = _index_reachable()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("layer")
    # a snapshot: the tree may be edited while the session runs, and two builds must see the same code
    sources = base / "qcflow"
    shutil.copytree(LAYER.PACKAGE_DIR, sources, ignore=shutil.ignore_patterns("__pycache__"))
    out = base / "build"
    done = build_into(out, python, sources)
    assert done.returncode == 0, done.stdout + done.stderr
    print("\n" + done.stdout)
    yield Build(python, sources, out, out / "layer.zip", done.stdout)


@pytest.fixture(scope="session")
def unpacked(layer: Build, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip extracted as FC does under /opt (extension modules cannot be imported from a zip)."""
    opt = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(layer.zip) as archive:
        archive.extractall(opt)
    return opt / "python"


# --------------------------------------------------------------------------- what FC runs


def test_every_handler_imports_with_only_the_layer(layer: Build, unpacked: Path) -> None:
    code = r"""
import importlib.util, json, pkgutil, sys, sysconfig
layer, functions = sys.argv[1], sys.argv[2:]
sys.path.insert(0, layer)
found = {}
for path in functions:
    name = path.rsplit('/', 2)[-2]
    sys.path.insert(0, path.rsplit('/', 1)[0])  # FC puts the code folder on sys.path
    spec = importlib.util.spec_from_file_location('index_' + name, path)
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    found[name] = sorted(n for n in ('handler', 'initialize') if callable(getattr(module, n, None)))
import qcflow
failed = {}
for info in pkgutil.walk_packages(qcflow.__path__, 'qcflow.'):  # lazy imports too: every module the layer ships
    try:
        __import__(info.name)
    except Exception as exc:
        failed[info.name] = repr(exc)
stdlib = sysconfig.get_paths()['stdlib']
outside = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, '__file__', None) and not module.__file__.startswith((layer, stdlib))
    and not name.startswith('index_')
)
import pydantic.main
print(json.dumps({'found': found, 'failed': failed, 'outside': outside,
                  'filename': pydantic.main.BaseModel.__init__.__code__.co_filename}))
"""
    handlers = [str(ROOT / "functions" / name / "index.py") for name in FUNCTIONS]
    done = subprocess.run([layer.python, "-I", "-S", "-c", code, str(unpacked), *handlers],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["found"] == {"push": ["handler", "initialize"], "harvest": ["handler"], "callback": ["handler"]}
    assert result["failed"] == {}
    assert result["outside"] == [], "modules loaded from outside the layer and the standard library"
    assert result["filename"].startswith(LAYER.LAYER_SITE + "/"), "tracebacks should name where FC unpacks the layer"


def test_nothing_but_runtime_code_in_the_layer(layer: Build) -> None:
    names = layer.names()
    assert names and all(n.startswith("python/") for n in names), "FC adds /opt/python to sys.path"
    tops = {n.split("/")[1] for n in names}
    assert not [t for t in tops if t.lower().startswith(NOT_RUNTIME)], sorted(tops)
    tooling = f"python/qcflow/{LAYER.TOOLING_PACKAGE}/"
    assert not [n for n in names if n.startswith(tooling)]
    assert "bin" not in tops
    assert not [n for n in names if n.endswith(".pyi") or n.endswith(".dist-info/RECORD")]
    assert not [n for n in names if set(n.split("/")[2:-1]) & {"tests", "test", "SelfTest"}]
    assert "python/qcflow/push/pusher.py" in names and "python/qcflow/store/oss.py" in names


def test_modules_are_compiled_for_the_runtime(layer: Build) -> None:
    """.pyc of Python 3.10, hash-based and never checked: valid without the zip's mtimes."""
    magic = subprocess.run([layer.python, "-c", "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"],
                           capture_output=True, text=True, check=True).stdout
    names = set(layer.names())
    with zipfile.ZipFile(layer.zip) as archive:
        for name in sorted(names):
            if name.endswith(".py"):
                assert name.startswith("python/qcflow/"), f"{name}: only qcflow ships its sources"
                head, tail = name.rsplit("/", 1)
                assert f"{head}/__pycache__/{tail[:-3]}.cpython-310.pyc" in names, name
            elif name.endswith(".pyc"):
                header = archive.read(name)[:8]
                assert header[:4].hex() == magic, f"{name}: not Python 3.10 bytecode"
                assert int.from_bytes(header[4:8], "little") == 0b01, f"{name}: not unchecked-hash"


def test_layer_is_within_the_size_goal(layer: Build) -> None:
    with zipfile.ZipFile(layer.zip) as archive:
        unzipped = sum(i.file_size for i in archive.infolist())
    zipped = layer.zip.stat().st_size
    print(f"\nlayer: {unzipped / 1e6:.1f} MB unzipped, {zipped / 1e6:.1f} MB zipped (goal <= {GOAL_MB:g} MB unzipped)")
    assert unzipped <= GOAL_MB * 1e6
    assert f"unzipped {unzipped / 1e6:.1f} MB" in layer.report, "the build prints the size it measured"


# --------------------------------------------------------------------------- reproducible and checkable


def test_zip_entries_are_normalised(layer: Build) -> None:
    with zipfile.ZipFile(layer.zip) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} <= {0o100644, 0o100755}
    assert not [i for i in infos if i.is_dir()]


def test_two_builds_give_the_same_bytes(layer: Build, tmp_path: Path) -> None:
    again = build_into(tmp_path / "build", layer.python, layer.sources)
    assert again.returncode == 0, again.stdout + again.stderr
    first, second = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (layer.zip, tmp_path / "build" / "layer.zip"))
    assert first == second
    assert (layer.out / "layer.id").read_text() == (tmp_path / "build" / "layer.id").read_text() == first[:16]


def test_check_refuses_a_build_older_than_its_sources(layer: Build, tmp_path: Path) -> None:
    out = tmp_path / "build"
    shutil.copytree(layer.out, out, ignore=shutil.ignore_patterns("layer"))
    sources = tmp_path / "qcflow"
    shutil.copytree(layer.sources, sources)
    assert run_script("--check", "--out", str(out), "--package-dir", str(sources)).returncode == 0

    (sources / "push" / "pusher.py").write_text((sources / "push" / "pusher.py").read_text() + "\n# changed\n")
    stale = run_script("--check", "--out", str(out), "--package-dir", str(sources))
    assert stale.returncode == 1 and "make layer" in stale.stderr

    shutil.copyfile(layer.sources / "push" / "pusher.py", sources / "push" / "pusher.py")
    (out / "layer.id").write_text("0" * 16)
    assert run_script("--check", "--out", str(out), "--package-dir", str(sources)).returncode == 1

    shutil.rmtree(out)
    missing = run_script("--check", "--out", str(out), "--package-dir", str(sources))
    assert missing.returncode == 1 and "make layer" in missing.stderr


# --------------------------------------------------------------------------- which qcflow modules


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_qcflow_modules_are_the_handlers_import_closure(tmp_path: Path) -> None:
    package, functions = tmp_path / "qcflow", tmp_path / "functions"
    _write(package, {
        "__init__.py": "",
        "fc.py": "from qcflow.store import open_store\n",
        "store/__init__.py": "from .local import LocalStore\n",  # relative import
        "store/local.py": "",
        "store/oss.py": "",
        "jobs.py": "def run():\n    from qcflow.models import tea\n    import qcflow.store.oss\n",  # lazy imports
        "models/__init__.py": "",
        "models/tea.py": "from ..errors import Problem\n",
        "errors.py": "class Problem(Exception): ...\n",
        "unused.py": "",
        "cli.py": "import click\n",
    })
    _write(functions, {"a/index.py": "from qcflow.fc import x\n", "b/index.py": "from qcflow import jobs\n"})
    shipped = [p.as_posix() for p in LAYER.package_files(package, functions)]
    assert shipped == [
        "__init__.py", "errors.py", "fc.py", "jobs.py", "models/__init__.py", "models/tea.py",
        "store/__init__.py", "store/local.py", "store/oss.py",
    ]


def test_a_handler_reaching_a_non_runtime_module_fails_the_build(tmp_path: Path) -> None:
    package, functions = tmp_path / "qcflow", tmp_path / "functions"
    _write(package, {"__init__.py": "", "push.py": "def later():\n    from qcflow.tools.sandbox import server\n",
                     "tools/__init__.py": "", "tools/sandbox/__init__.py": "", "tools/sandbox/server.py": "import uvicorn\n"})
    _write(functions, {"push/index.py": "import qcflow.push\n"})
    with pytest.raises(LAYER.BuildError, match="tools/sandbox/server.py"):
        LAYER.package_files(package, functions)
