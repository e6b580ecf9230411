#!/usr/bin/env python3
"""Build the Function Compute layer: ``build/layer.zip``, ``python/`` at the top (FC puts
``/opt/python`` on ``sys.path``), holding the runtime dependencies and the ``qcflow`` package.

Why each step:

- **FC's platform, not ours.** Wheels are chosen for Linux x86_64 and the runtime's Python
  (``pip install --platform manylinux2014_x86_64 --python-version 3.10 --only-binary=:all:``),
  and pip runs *under Python 3.10*: dependency markers (``exceptiongroup; python_version <
  "3.11"``) are evaluated by the interpreter that runs pip, so a 3.11 pip would leave out what
  3.10 needs.
- **Only what the functions import.** The ``qcflow`` modules are the import closure of
  ``functions/*/index.py`` (every ``import`` of qcflow, lazy ones inside functions included),
  so the demo, the CLI, the sandbox and the FC emulator stay out without a list to maintain;
  the build fails if that closure reaches one of them (``NOT_RUNTIME_QCFLOW``), or if a
  CLI/test/SDK distribution (``FORBIDDEN``) lands in the tree. No console scripts, test
  suites, type stubs or pip bookkeeping either.
- **Compiled for the runtime.** ``.pyc`` by Python 3.10 with ``--invalidation-mode
  unchecked-hash``: valid without mtimes (a zip's timestamps are fixed) and never re-checked
  against the source, so a cold start reads bytecode instead of compiling. They embed
  ``/opt/python/...`` as their file name (tracebacks point where FC unpacks the layer) and are
  compiled with ``PYTHONHASHSEED=0`` (set ordering in constants), one file after another in
  sorted order (marshal's output depends on what the compiling process did before: parallel
    workers gave different bytes), so they do not depend on where or when the build ran.
  Third-party modules ship as ``.pyc`` only (their sources would take the layer over the
  25 MB goal); ``qcflow`` keeps its sources for tracebacks.
- **Reproducible.** Entries sorted, fixed timestamps and permissions: the same tree gives the
  same bytes, hence the same CRC64, and ``fc3 layer publish`` skips an unchanged layer. (pip
  takes the newest release each specifier allows: a new release is a new layer, on purpose.)
- **Content-addressed name.** ``build/layer.id`` (no newline) is the zip's sha256 prefix;
  ``s.yaml``'s ``layer`` resource (``sdevs/qcflow-layer``) publishes it as ``qcflow-<id>`` and
  gives the functions that layer's latest version as FC numbers it, so a function can never
  point at another build's layer. ``build/layer.inputs`` fingerprints what the layer
  was built from; ``--check`` (run by ``s deploy``) refuses a build older than its sources.

Usage::

    python3 scripts/build_layer.py                 # build, print sizes (the Makefile's `make layer`)
    python3 scripts/build_layer.py --check         # exit 1 unless build/ matches the sources
    python3 scripts/build_layer.py --python /path/to/python3.10 --out /tmp/build
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "shared" / "qcflow"
FUNCTIONS_DIR = ROOT / "functions"
PYPROJECT = ROOT / "pyproject.toml"

#: FC runtime the layer is built for; s.yaml's `runtime` and `--compatible-runtime` must match.
RUNTIME = "python3.10"
RUNTIME_VERSION = (3, 10)
PLATFORM = "manylinux2014_x86_64"
#: Where FC unpacks a layer's python/ folder (put on sys.path by the Python runtimes).
LAYER_SITE = "/opt/python"
#: Layer name prefix; the full name is ``<prefix>-<id>`` (see ``layer_name``).
LAYER_PREFIX = "qcflow"
#: Goal of the issue: the official-SDK alternative measured 44 MB.
MAX_UNZIPPED_MB = 25.0

#: The one ``qcflow`` folder that is not runtime (``qcflow/tools/``: the sandbox, the report, the
#: CLI, the demo, the FC emulator, status): the handlers' import closure must never reach it.
#: ``tests/test_runtime_imports.py`` and ``tests/test_layer.py`` read this same name.
TOOLING_PACKAGE = "tools"

#: Top-level names that must not land in the layer: CLI and server extras, test tools, and the
#: official SDKs (test oracles only; the OSS SDK V2 is the one runtime SDK).
FORBIDDEN = (
    "click", "rich", "pygments", "markdown_it", "mdurl", "uvicorn", "httptools", "pytest", "_pytest",
    "hypothesis", "moto", "alibabacloud_tea", "alibabacloud_ccc", "alibabacloud_qualitycheck",
    "alibabacloud_credentials", "alibabacloud_openapi", "darabonba", "Tea",
    "duckdb", "plotly", "narwhals", "playwright", "greenlet",
)

#: Directories inside packages that only hold the packages' own test suites.
TEST_SUITE_DIRS = frozenset({"tests", "test", "SelfTest"})
#: Sub-packages no function imports: pydantic's copy of its 1.x API (for code written for pydantic 1;
#: nothing in the layer is). ``tests/test_layer.py`` loads every handler from the built layer.
UNUSED_SUBPACKAGES = ("pydantic/v1",)
#: pip's bookkeeping that nothing reads at run time (RECORD would be wrong anyway: we add .pyc).
DIST_INFO_DROP = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "WHEEL"})

#: Zip entries: 1980-01-01 (the earliest DOS time), rw-r--r-- (rwxr-xr-x for shared objects).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
EXEC_MODE = 0o100755


class BuildError(Exception):
    """A build that cannot produce a correct layer; the message says what to do."""


@dataclass(frozen=True)
class Paths:
    """Where one build writes (``--out``; default ``build/`` in the repo)."""

    out: Path

    @property
    def tree(self) -> Path:  # build/layer/ holds python/; kept after the build for inspection
        return self.out / "layer"

    @property
    def site(self) -> Path:
        return self.tree / "python"

    @property
    def zip(self) -> Path:
        return self.out / "layer.zip"

    @property
    def id_file(self) -> Path:
        return self.out / "layer.id"

    @property
    def inputs_file(self) -> Path:
        return self.out / "layer.inputs"


@dataclass(frozen=True)
class Report:
    zip: Path
    layer_id: str
    unzipped_bytes: int
    zipped_bytes: int
    files: int
    distributions: tuple[str, ...]

    @property
    def unzipped_mb(self) -> float:
        return self.unzipped_bytes / 1e6

    @property
    def zipped_mb(self) -> float:
        return self.zipped_bytes / 1e6


# --------------------------------------------------------------------------- inputs


def _toml_loads(text: str) -> dict:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
        try:
            from pip._vendor import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as exc:
            raise BuildError("cannot parse pyproject.toml: run with Python 3.11+ or a Python that has pip") from exc
    return tomllib.loads(text)


def runtime_dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    """``[project].dependencies``: what the functions need at run time, nothing else."""
    deps = _toml_loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("dependencies", [])
    if not deps or not all(isinstance(d, str) for d in deps):
        raise BuildError(f"{pyproject}: [project].dependencies is missing or not a list of strings")
    return list(deps)


def _module_file(package_dir: Path, name: str) -> Path | None:
    """The file of module ``qcflow.a.b`` (``a/b.py`` or ``a/b/__init__.py``), if it exists."""
    parts = name.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _qcflow_imports(path: Path, name: str) -> set[str]:
    """Every qcflow module ``path`` (module ``name``) may import, wherever the import sits."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return {m for m in found if m == "qcflow" or m.startswith("qcflow.")}


def package_files(package_dir: Path = PACKAGE_DIR, functions_dir: Path = FUNCTIONS_DIR) -> list[Path]:
    """The ``qcflow`` sources the layer needs: the import closure of the handlers, sorted,
    relative to ``package_dir`` (a module's parent packages are imported with it)."""
    handlers = sorted(functions_dir.glob("*/index.py"))
    if not handlers:
        raise BuildError(f"no handlers in {functions_dir}")
    pending = set().union(*(_qcflow_imports(h, "index") for h in handlers))
    seen: set[str] = set()
    files: set[Path] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(package_dir, name)
        if path is None:  # `from qcflow.x import SomeClass`: not a module
            continue
        files.add(path.relative_to(package_dir))
        parts = name.split(".")
        pending.update(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.update(_qcflow_imports(path, name))
    leaked = sorted(f.as_posix() for f in files if f.parts[0] == TOOLING_PACKAGE)
    if leaked:
        raise BuildError(f"the handlers' imports reach non-runtime modules: {', '.join(leaked)}")
    return sorted(files, key=lambda p: p.as_posix())


def inputs_fingerprint(deps: Sequence[str], package_dir: Path = PACKAGE_DIR) -> str:
    """What the layer is built from: rules (this script), dependencies, qcflow's sources."""
    digest = hashlib.sha256()
    for part in (RUNTIME, PLATFORM, Path(__file__).read_bytes().decode("utf-8"), *sorted(deps)):
        digest.update(part.encode("utf-8") + b"\0")
    for rel in package_files(package_dir):
        digest.update(rel.as_posix().encode("utf-8") + b"\0" + (package_dir / rel).read_bytes() + b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------- the runtime's Python


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.fullmatch(r"(\d+)\.(\d+)", done.stdout.strip()) if done.returncode == 0 else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def _pyenv_pythons() -> list[str]:
    """pyenv's 3.10.x interpreters, newest first (the shim finds none unless one is selected)."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = []
    for exe in (root / "versions").glob("3.10.*/bin/python3.10"):
        numbers = re.findall(r"\d+", exe.parents[1].name)
        found.append((tuple(int(n) for n in numbers), str(exe)))
    return [exe for _, exe in sorted(found, reverse=True)]


def find_runtime_python(explicit: str | None = None) -> str:
    """A Python 3.10 interpreter: ``--python``, this one, ``python3.10`` on PATH, or pyenv's."""
    if explicit:
        if _version_of(explicit) != RUNTIME_VERSION:
            raise BuildError(f"--python {explicit} is not Python {RUNTIME_VERSION[0]}.{RUNTIME_VERSION[1]}")
        return explicit
    candidates = [sys.executable, shutil.which("python3.10"), *_pyenv_pythons()]
    for candidate in candidates:
        if candidate and _version_of(candidate) == RUNTIME_VERSION:
            return candidate
    raise BuildError(
        f"no Python {RUNTIME_VERSION[0]}.{RUNTIME_VERSION[1]} found (FC's {RUNTIME}): pip must run under it to "
        "resolve dependency markers and compileall must use it to write .pyc the runtime reads. "
        "Install it (e.g. `pyenv install 3.10`) or pass --python"
    )


# --------------------------------------------------------------------------- the tree


def _run(command: Sequence[str], *, what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(list(command), capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise BuildError(f"{what} failed (exit {done.returncode}):\n{tail}")


def install_dependencies(python: str, deps: Sequence[str], site: Path) -> None:
    """The runtime dependencies for FC's platform, binary wheels only, no bytecode yet."""
    _run(
        [
            python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
            "--target", str(site), "--platform", PLATFORM, "--implementation", "cp",
            "--python-version", f"{RUNTIME_VERSION[0]}.{RUNTIME_VERSION[1]}", "--only-binary=:all:",
            "--no-compile", *deps,
        ],
        what="pip install",
    )


def copy_package(site: Path, package_dir: Path = PACKAGE_DIR) -> None:
    for rel in package_files(package_dir):
        target = site / "qcflow" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package_dir / rel, target)


def prune(site: Path) -> None:
    """Drop what no function reads: console scripts, caches, test suites, stubs, pip's records, unused
    sub-packages."""
    shutil.rmtree(site / "bin", ignore_errors=True)
    for unused in UNUSED_SUBPACKAGES:
        shutil.rmtree(site / unused, ignore_errors=True)
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not path.exists():
            continue
        rel = path.relative_to(site)
        if path.is_dir():
            if path.name == "__pycache__" or (len(rel.parts) > 1 and path.name in TEST_SUITE_DIRS):
                shutil.rmtree(path)
        elif path.suffix == ".pyi" or (rel.parts[0].endswith(".dist-info") and path.name in DIST_INFO_DROP):
            path.unlink()


def forbidden_entries(names: Iterable[str]) -> list[str]:
    """Top-level layer entries (``python/<name>``) of a forbidden distribution."""
    bad = set()
    for name in names:
        parts = name.split("/")
        top = parts[1] if parts[0] == "python" and len(parts) > 1 else parts[0]
        if top.startswith(FORBIDDEN):  # module folders and dist-info names alike (`click`, `click-8.1.8.dist-info`)
            bad.add(top)
    return sorted(bad)


def compile_tree(python: str, site: Path) -> None:
    """``.pyc`` for the runtime, valid without mtimes, naming ``/opt/python/...`` as their source.

    ``qcflow`` keeps its sources beside ``__pycache__/`` (tracebacks of our own code show the
    line). Third-party modules become sourceless ``.pyc`` in place of their ``.py`` (PEP 3147's
    legacy layout, which the import system loads without a source): the sources would cost
    ~8 MB the functions never read, and their tracebacks still give file and line.
    """
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    own = site / "qcflow"
    common = [python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
    # no -j: one process, sorted order (see the module docstring: parallel output is not stable)
    _run([*common, "-d", f"{LAYER_SITE}/qcflow", str(own)], what="compileall (qcflow)", env=env)
    _run([*common, "-b", "-x", "^" + re.escape(str(own) + os.sep), "-d", LAYER_SITE, str(site)],
         what="compileall (dependencies)", env=env)
    tag = f"cpython-{RUNTIME_VERSION[0]}{RUNTIME_VERSION[1]}"
    for source in sorted(site.rglob("*.py")):
        if own in source.parents:
            compiled = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        else:
            compiled = source.with_suffix(".pyc")
        if not compiled.exists():
            raise BuildError(f"compileall wrote no .pyc for {source.relative_to(site)}")
        if own not in source.parents:
            source.unlink()


def distributions(site: Path) -> tuple[str, ...]:
    """``name version`` of every distribution installed, from the dist-info folder names."""
    found = []
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        found.append(f"{name} {version}")
    return tuple(sorted(found, key=str.lower))


# --------------------------------------------------------------------------- the zip


def _mode(path: Path) -> int:
    return EXEC_MODE if path.suffix == ".so" or ".so." in path.name else FILE_MODE


def write_zip(tree: Path, target: Path) -> None:
    """Zip ``tree`` (which holds ``python/``) deterministically: same tree, same bytes."""
    entries = sorted(((p.relative_to(tree).as_posix(), p) for p in tree.rglob("*") if p.is_file()), key=lambda e: e[0])
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.create_system = 3  # Unix: external_attr carries the mode
            info.external_attr = _mode(path) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    os.replace(partial, target)


def layer_id(zip_path: Path) -> str:
    """The zip's content id: 16 hex digits of its sha256 (a layer name allows 64 characters)."""
    return hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]


def layer_name(layer_id_: str) -> str:
    """The FC layer name ``s.yaml`` builds from ``build/layer.id``."""
    return f"{LAYER_PREFIX}-{layer_id_}"


def zip_sizes(zip_path: Path) -> tuple[int, int, int]:
    """(unzipped bytes, zipped bytes, files) of a layer zip."""
    with zipfile.ZipFile(zip_path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
    return sum(i.file_size for i in infos), zip_path.stat().st_size, len(infos)


# --------------------------------------------------------------------------- commands


def build(paths: Paths, *, python: str, package_dir: Path = PACKAGE_DIR, max_unzipped_mb: float = MAX_UNZIPPED_MB) -> Report:
    deps = runtime_dependencies()
    fingerprint = inputs_fingerprint(deps, package_dir)
    for stale in (paths.zip, paths.id_file, paths.inputs_file):
        stale.unlink(missing_ok=True)  # a failed build must not leave an older layer looking current
    shutil.rmtree(paths.tree, ignore_errors=True)
    paths.site.mkdir(parents=True)
    install_dependencies(python, deps, paths.site)
    copy_package(paths.site, package_dir)
    prune(paths.site)
    bad = forbidden_entries(p.relative_to(paths.site).parts[0] for p in paths.site.iterdir())
    if bad:
        raise BuildError(f"non-runtime distributions landed in the layer: {', '.join(bad)} (check [project].dependencies)")
    compile_tree(python, paths.site)
    write_zip(paths.tree, paths.zip)
    unzipped, zipped, files = zip_sizes(paths.zip)
    report = Report(paths.zip, layer_id(paths.zip), unzipped, zipped, files, distributions(paths.site))
    if report.unzipped_mb > max_unzipped_mb:
        paths.zip.unlink()
        raise BuildError(f"layer is {report.unzipped_mb:.1f} MB unzipped, over the {max_unzipped_mb:g} MB goal")
    paths.id_file.write_text(report.layer_id, encoding="ascii")  # no newline: s.yaml reads it with ${file()}
    paths.inputs_file.write_text(fingerprint + "\n", encoding="ascii")
    return report


def check(paths: Paths, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Problems that make ``build/`` unfit to deploy (empty: fit)."""
    if not paths.zip.exists() or not paths.id_file.exists() or not paths.inputs_file.exists():
        return [f"no layer build in {paths.out}: run `make layer`"]
    problems = []
    if paths.id_file.read_text(encoding="ascii") != layer_id(paths.zip):
        problems.append(f"{paths.id_file} does not match {paths.zip}: run `make layer`")
    if paths.inputs_file.read_text(encoding="ascii").strip() != inputs_fingerprint(runtime_dependencies(), package_dir):
        problems.append("the layer is older than pyproject's dependencies, shared/qcflow or this script: run `make layer`")
    return problems


def describe(report: Report) -> str:
    where = report.zip.relative_to(ROOT) if report.zip.is_relative_to(ROOT) else report.zip
    return "\n".join([
        f"layer {where}  ({RUNTIME}, {PLATFORM})",
        f"  unzipped {report.unzipped_mb:.1f} MB (goal <= {MAX_UNZIPPED_MB:g} MB), zipped {report.zipped_mb:.1f} MB, "
        f"{report.files} files",
        f"  FC layer name {layer_name(report.layer_id)} (published by `s deploy`, or `s layer deploy -y`)",
        "  " + ", ".join(report.distributions),
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="build folder (default: build/)")
    parser.add_argument("--python", help=f"the runtime's interpreter (Python {RUNTIME_VERSION[0]}.{RUNTIME_VERSION[1]}); found if omitted")
    parser.add_argument("--max-mb", type=float, default=MAX_UNZIPPED_MB, help="fail above this many MB unzipped")
    parser.add_argument("--check", action="store_true", help="only check that the build matches the sources")
    parser.add_argument("--package-dir", type=Path, default=PACKAGE_DIR, help="the qcflow sources (default: shared/qcflow)")
    args = parser.parse_args(argv)
    paths = Paths(args.out.resolve())
    try:
        if args.check:
            problems = check(paths, args.package_dir.resolve())
            for problem in problems:
                print(f"layer check: {problem}", file=sys.stderr)
            return 1 if problems else 0
        report = build(paths, python=find_runtime_python(args.python), package_dir=args.package_dir.resolve(),
                       max_unzipped_mb=args.max_mb)
    except BuildError as exc:
        print(f"layer: {exc}", file=sys.stderr)
        return 1
    print(describe(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
