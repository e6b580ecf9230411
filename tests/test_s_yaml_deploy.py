"""How `s` commands behave on s.yaml (issue 22 #10-#12, issue 25's s.yaml part): which commands need
what, and the pre-deploy check (scripts/check_deploy.py) that names what is missing in one line.

The structure tests read s.yaml as text/YAML and run in any CI. The tests that run the real
Serverless Devs `s` (3.1.10, with fc3 installed in its ~/.s) skip unless ``QCFLOW_S_BIN`` names
it; they never reach a cloud (``s preview`` and ``s verify`` only resolve and validate).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CALLBACK_URL = "${resources.callback.info.url.system_url}"
LAYER_ARN = "${resources.layer.info.arn}"
TOKEN = "a" * 43


def _check_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_deploy", ROOT / "scripts" / "check_deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHECK = _check_module()


def raw() -> dict[str, Any]:
    """s.yaml; its ``functions``: the fc3 resources (not the layer)."""
    document = yaml.safe_load((ROOT / "s.yaml").read_text())
    document["functions"] = {n: r for n, r in document["resources"].items() if r["component"] == "fc3"}
    return document


def actions(resource: str | None) -> list[dict[str, str]]:
    document = raw()
    owner = document if resource is None else document["resources"][resource]
    return list(owner["actions"]["pre-deploy"])


def built(tmp_path: Path) -> Path:
    build = tmp_path / "build"
    build.mkdir()
    (build / "layer.zip").write_bytes(b"PK")
    (build / "layer.id").write_text("0123456789abcdef")
    return build


def run_check(argv: list[str], environ: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = CHECK.main(argv, environ=environ)
    return code, capsys.readouterr().err.splitlines()


# --------------------------------------------------------------------------- the check script


def test_a_complete_deploy_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--layer",
        "--build",
        str(built(tmp_path)),
        "--ccc",
        "--token",
        "--callback-url",
        "https://cb-1.cn-shanghai.fcapp.run",
    ]
    assert run_check(argv, {"QCFLOW_CCC_INSTANCE_ID": "inst-1", "QCFLOW_CALLBACK_TOKEN": TOKEN}, capsys) == (0, [])


def test_fresh_checkout_without_a_build_says_make_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_check(["--layer", "--build", str(tmp_path / "build")], {}, capsys)
    assert code == 1 and len(lines) == 1
    assert "build/layer.zip is missing" in lines[0] and "run `make layer`" in lines[0]
    build = built(tmp_path)
    (build / "layer.id").unlink()
    code, lines = run_check(["--layer", "--build", str(build)], {}, capsys)
    assert code == 1 and "build/layer.id is missing: run `make layer`" in lines[0]


def test_missing_ccc_instance_id_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    for environ in ({}, {"QCFLOW_CCC_INSTANCE_ID": ""}, {"QCFLOW_CCC_INSTANCE_ID": "  "}):
        code, lines = run_check(["--ccc"], environ, capsys)
        assert code == 1 and len(lines) == 1
        assert "QCFLOW_CCC_INSTANCE_ID is not set: export QCFLOW_CCC_INSTANCE_ID=" in lines[0]
    assert run_check(["--ccc"], {"QCFLOW_CCC_INSTANCE_ID": "inst-1"}, capsys) == (0, [])


def test_a_deploy_without_a_callback_token_says_how_to_generate_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_check(["--token"], {}, capsys)
    assert code == 1 and len(lines) == 1
    assert "QCFLOW_CALLBACK_TOKEN is not set" in lines[0]
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in lines[0]


def test_a_weak_token_is_refused_without_echoing_it(capsys: pytest.CaptureFixture[str]) -> None:
    for name, environ in (
        ("QCFLOW_CALLBACK_TOKEN", {"QCFLOW_CALLBACK_TOKEN": "short-secret"}),
        ("QCFLOW_CALLBACK_TOKEN", {"QCFLOW_CALLBACK_TOKEN": "x" * 30 + "/?&"}),
        ("QCFLOW_CALLBACK_PREVIOUS_TOKEN", {"QCFLOW_CALLBACK_TOKEN": TOKEN, "QCFLOW_CALLBACK_PREVIOUS_TOKEN": "old"}),
    ):
        code, lines = run_check(["--token"], environ, capsys)
        assert code == 1 and len(lines) == 1 and lines[0].startswith(f"qcflow deploy check: {name} must be 22 to 256")
        assert not any(value in lines[0] for value in environ.values() if value != TOKEN)
    previous = {"QCFLOW_CALLBACK_TOKEN": TOKEN, "QCFLOW_CALLBACK_PREVIOUS_TOKEN": "b" * 22}
    assert run_check(["--token"], previous, capsys) == (0, [])


def test_callback_url_must_be_https(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_check(["--callback-url", "http://cb.cn-shanghai.fcapp.run"], {}, capsys)
    assert code == 1 and len(lines) == 1 and "is not an https URL" in lines[0]
    assert run_check(["--callback-url", "https://cb.cn-shanghai.fcapp.run/"], {}, capsys) == (0, [])


def test_push_before_callback_exists_is_told_to_deploy_callback_first(capsys: pytest.CaptureFixture[str]) -> None:
    """s leaves an info reference it cannot resolve as its own text (callback without a URL)."""
    for unresolved in (CALLBACK_URL, ""):
        code, lines = run_check(["--callback-url", unresolved], {}, capsys)
        assert code == 1 and len(lines) == 1
        assert "run `s callback deploy -y`" in lines[0]


def test_every_problem_is_one_line_and_the_script_exits_1(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "check_deploy.py")
    done = subprocess.run(
        [sys.executable, script, "--layer", "--build", str(tmp_path), "--ccc", "--token"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
        check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith("qcflow deploy check: ") for line in lines)


# --------------------------------------------------------------------------- s.yaml wiring


def test_only_deploy_needs_the_deployers_settings() -> None:
    """`${env('X')}` without a default stops every command (info, remove, preview) when X is unset."""
    text = (ROOT / "s.yaml").read_text()
    references = re.findall(r"\$\{env\(([^)]*)\)\}", text)
    assert references
    for arguments in references:
        assert re.fullmatch(r"'QCFLOW_\w+',\s*''", arguments), f"${{env({arguments})}} has no default"


def test_the_checks_run_before_anything_is_deployed() -> None:
    first, second = actions(None)[:2]
    # everything a whole deploy needs, before the first resource is deployed (nothing half-deployed)
    assert first == {"run": "python3 scripts/check_deploy.py --layer --ccc --token", "path": "./"}
    assert second == {"run": "python3 scripts/build_layer.py --check", "path": "./"}
    layer = f"--layer-arn '{LAYER_ARN}'"
    expected = {
        "push": f"python3 scripts/check_deploy.py --ccc --token {layer} --callback-url '{CALLBACK_URL}'",
        "callback": f"python3 scripts/check_deploy.py --token {layer}",
        "harvest": f"python3 scripts/check_deploy.py {layer}",
    }
    for name, command in expected.items():
        assert actions(name) == [{"run": command, "path": "./"}], name
    # the URL and the ARN the check sees are the ones the functions are given
    resources = raw()["resources"]
    assert resources["push"]["props"]["environmentVariables"]["QCFLOW_PUSH_CALLBACK_URL"] == CALLBACK_URL
    for name in expected:
        assert resources[name]["props"]["layers"] == [LAYER_ARN], name


def test_no_output_reference_left() -> None:
    """An `output` reference exists only when its resource deploys in the same run (issue 22 #10)."""
    assert ".output." not in (ROOT / "s.yaml").read_text()


def test_deploy_flow_is_serial_with_callback_before_push() -> None:
    """Info references do not order s's steps (output ones do): the flow does."""
    flow = raw()["flow"]
    assert all(len(group) == 1 for group in flow["deploy"]), "parallel deploys would publish the layer twice"
    assert [group[0] for group in flow["deploy"]] == ["layer", "callback", "harvest", "push"]
    # push's props read callback's info: remove push while callback is still there
    assert [group[0] for group in flow["remove"]] == ["push", "harvest", "callback", "layer"]


def test_push_and_layer_checks_name_the_resource_to_deploy(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_check(["--layer-arn", LAYER_ARN], {}, capsys)
    assert code == 1 and lines == [
        "qcflow deploy check: this build's layer is not published yet: "
        "run `s layer deploy -y` (or a whole `s deploy -y`)"
    ]
    arn = "acs:fc:cn-shanghai:1234567890123456:layers/qcflow-0123456789abcdef/versions/3"
    assert run_check(["--layer-arn", arn], {}, capsys) == (0, [])


def test_callback_concurrency_is_capped() -> None:
    props = raw()["resources"]["callback"]["props"]
    assert props["concurrencyConfig"] == {"reservedConcurrency": 4}
    for name in ("push", "harvest"):
        assert "concurrencyConfig" not in raw()["resources"][name]["props"], name


def test_callback_token_and_account_reach_the_functions_that_use_them() -> None:
    resources = raw()["functions"]
    env = {name: resource["props"]["environmentVariables"] for name, resource in resources.items()}
    token = "${env('QCFLOW_CALLBACK_TOKEN', '')}"
    assert env["push"]["QCFLOW_CALLBACK_TOKEN"] == token
    assert env["callback"]["QCFLOW_CALLBACK_TOKEN"] == token
    assert env["callback"]["QCFLOW_CALLBACK_PREVIOUS_TOKEN"] == "${env('QCFLOW_CALLBACK_PREVIOUS_TOKEN', '')}"
    assert env["callback"]["QCFLOW_SCA_ALI_UID"] == "${config('AccountID')}"
    assert not {"QCFLOW_CALLBACK_TOKEN", "QCFLOW_CALLBACK_PREVIOUS_TOKEN", "QCFLOW_SCA_ALI_UID"} & set(env["harvest"])
    assert not {"QCFLOW_CALLBACK_PREVIOUS_TOKEN", "QCFLOW_SCA_ALI_UID"} & set(env["push"])


# --------------------------------------------------------------------------- the real `s` (optional)

needs_node = pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")


@needs_node
def test_layer_component_without_a_build(tmp_path: Path) -> None:
    """info gives nothing (the functions' other commands work), deploy says what to run."""
    script = (
        "const C = require(process.argv[1]); const c = new C({logger: console});"
        "const inputs = {cwd: process.argv[2], props: {region: 'cn-shanghai', build: './build'}};"
        "c.info(inputs).then((i) => { console.log(JSON.stringify(i)); return c.deploy(inputs); })"
        ".then(() => console.log('deployed'), (e) => console.log(e.message));"
    )
    component = str(ROOT / "sdevs" / "qcflow-layer")
    done = subprocess.run(
        ["node", "-e", script, component, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.splitlines() == [
        "{}",
        "build/layer.zip or build/layer.id is missing: run `make layer`, then deploy again",
    ], done.stderr


S_BIN = os.environ.get("QCFLOW_S_BIN", "")
needs_s = pytest.mark.skipif(
    not (S_BIN and shutil.which(S_BIN) and shutil.which("node")),
    reason="QCFLOW_S_BIN (Serverless Devs s 3.1.10 with fc3 and an `s config` access) is not set",
)


def _project(tmp_path: Path, *, with_build: bool) -> Path:
    project = tmp_path / "p"
    skipped = shutil.ignore_patterns(".git", ".venv*", "build", "__pycache__", "*.egg-info")
    shutil.copytree(ROOT, project, ignore=skipped)
    if with_build:
        built(project)
    return project


def _s(project: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("QCFLOW_")} | extra
    command = [S_BIN, *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=240, env=environ, check=False)


@needs_s
def test_real_s_previews_and_verifies_without_the_deployers_settings(tmp_path: Path) -> None:
    project = _project(tmp_path, with_build=True)
    for args in (("verify",), ("preview",)):
        done = _s(project, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "not found" not in done.stdout + done.stderr


@needs_s
def test_real_s_in_a_fresh_checkout(tmp_path: Path) -> None:
    """No build/, no QCFLOW_*: preview and verify work; deploy stops in one line before any request
    (FC's endpoint is a closed loopback port, so a broken check could not reach a cloud)."""
    project = _project(tmp_path, with_build=False)
    for args in (("verify",), ("preview",)):
        done = _s(project, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    done = _s(project, "deploy", "-y", FC_CLIENT_CUSTOM_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode != 0
    assert "qcflow deploy check: build/layer.zip is missing: run `make layer`" in done.stdout + done.stderr
