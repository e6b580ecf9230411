"""open_store: URL forms, ConfigErrors naming QCFLOW_STORE, and the cold-start import rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qcflow.config import load_settings
from qcflow.errors import ConfigError
from qcflow.store import LocalStore, open_store, parse_store_url

REPO = Path(__file__).resolve().parents[2]


def test_oss_url() -> None:
    settings = load_settings(environ={}, region="cn-shanghai")
    store = open_store("oss://my-bucket/qcflow/prod", settings=settings)
    assert type(store).__name__ == "OssStore"
    assert (store.bucket, store.prefix, store.url) == ("my-bucket", "qcflow/prod", "oss://my-bucket/qcflow/prod")  # type: ignore[attr-defined]
    assert parse_store_url("oss://my-bucket") == ("oss", "my-bucket", "")
    assert parse_store_url("oss://my-bucket/") == ("oss", "my-bucket", "")
    assert parse_store_url("oss://my-bucket/a/b/") == ("oss", "my-bucket", "a/b")


def test_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"file://{tmp_path}/data")
    assert isinstance(store, LocalStore) and store.root == tmp_path / "data"
    assert open_store(f"file://localhost{tmp_path}").root == tmp_path  # type: ignore[attr-defined]
    monkeypatch.chdir(tmp_path)
    rel = open_store("file:rel/dir")
    assert rel.root == tmp_path / "rel" / "dir"  # type: ignore[attr-defined]
    assert open_store("file:./qcflow-data").root == tmp_path / "qcflow-data"  # type: ignore[attr-defined]
    assert parse_store_url("file:///tmp/a%20b") == ("file", "/tmp/a b", "")
    rel.put("x", b"1")
    assert (tmp_path / "rel" / "dir" / "x").read_bytes() == b"1"


@pytest.mark.parametrize("url", [
    "", "   ", "s3://bucket/x", "http://127.0.0.1/x", "bucket/prefix", "/abs/path", "oss:/bucket",
    "oss://", "oss://Bad_Bucket/x", "oss://ab/x", "oss://bucket/../x", "oss://bucket/a//b",
    "file://otherhost/x", "file://relative", "file:", "file:///x?y=1",
])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="QCFLOW_STORE"):
        open_store(url, settings=load_settings(environ={}))


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO / "shared")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                          timeout=60).stdout.strip()


def test_import_does_not_load_oss_sdk(tmp_path: Path) -> None:
    out = _run(
        "import sys, qcflow.store as s\n"
        f"st = s.open_store('file://{tmp_path}'); st.put('k', b'v'); st.get('k')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('alibabacloud', 'pydantic', 'qcflow.config'))))"
    )
    assert out == "[]"


def test_star_import_does_not_load_oss_sdk() -> None:
    out = _run(
        "import sys\n"
        "from qcflow.store import *\n"
        "assert 'OssStore' not in dir() and open_store and WriterFailedError\n"
        "print(sorted(m for m in sys.modules if m.startswith(('alibabacloud', 'pydantic'))))"
    )
    assert out == "[]"
    assert _run("from qcflow.store import OssStore; print(OssStore.__name__)") == "OssStore"  # still lazily there


def test_oss_store_loads_only_the_oss_sdk() -> None:
    out = _run(
        "import sys, qcflow.store as s\n"
        "st = s.open_store('oss://bkt/p', settings=__import__('qcflow.config').config.load_settings(environ={}))\n"
        "mods = {m.split('.')[0] for m in sys.modules if m.startswith('alibabacloud')}\n"
        "print(sorted(mods))"
    )
    assert out == "['alibabacloud_oss_v2']"  # never alibabacloud_tea*, _ccc*, _qualitycheck*


def test_sources_never_import_other_alibaba_sdks() -> None:
    for path in (REPO / "shared" / "qcflow" / "store").rglob("*.py"):
        text = path.read_text()
        for banned in ("alibabacloud_tea", "alibabacloud_ccc", "alibabacloud_qualitycheck"):
            assert banned not in text, (path, banned)
