"""s.yaml deploys what the code expects: it validates against the fc3 component's own schema
(copied from devsapp/fc3, MIT), its handlers import, its environment is qcflow's settings, and
its layer is the one ``scripts/build_layer.py`` builds."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from qcflow.config import VARIABLES, env_name, load_settings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "fc3" / "schema.json").read_text())
TRIGGER_DEFINITIONS = {"oss": "IOssTriggerConfig", "timer": "ITimerTriggerConfig", "http": "IHttpTriggerConfig"}
#: A reference resolved at deploy time (`${env(...)}`, `${config(...)}`, `${file(...)}`, outputs).
PLACEHOLDER = "1234567890"
#: A deploy-time callback token: scripts/check_deploy.py refuses a deploy without a well-formed one.
TOKEN_PLACEHOLDER = "t" * 43
KNOWN_ENV = {env_name(name) for name in VARIABLES}
STANDARD_RUNTIMES = re.compile(r"^(python|nodejs|java|php|go|dotnetcore)")


def _build_layer_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_layer", ROOT / "scripts" / "build_layer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_layer", module)
    spec.loader.exec_module(module)
    return module


LAYER = _build_layer_module()


def resolve(value: Any, variables: dict[str, Any]) -> Any:
    """``${vars.x}`` from ``vars``; other references resolve at deploy time: a placeholder."""
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if isinstance(value, str):
        value = re.sub(r"\$\{vars\.(\w+)\}", lambda m: str(variables[m.group(1)]), value)
        value = re.sub(r"\$\{env\('QCFLOW_CALLBACK_\w*TOKEN'[^}]*\}", TOKEN_PLACEHOLDER, value)
        # the personal-data settings (issue 24) left unset by the deployer: their defaults
        value = re.sub(r"\$\{env\('QCFLOW_PII\w*', ''\)\}", "", value)
        return re.sub(r"\$\{[^}]+\}", PLACEHOLDER, value)
    return value


#: The layer as a resource: a local Serverless Devs component (publishes build/, exposes the ARN).
LAYER_COMPONENT = "./sdevs/qcflow-layer"


def raw() -> dict[str, Any]:
    """s.yaml's functions: the fc3 resources (the layer resource is checked on its own)."""
    document = yaml.safe_load((ROOT / "s.yaml").read_text())
    document["resources"] = {n: r for n, r in document["resources"].items() if r["component"] != LAYER_COMPONENT}
    return document


def raw_with_layer() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "s.yaml").read_text())


def load() -> dict[str, Any]:
    document = raw()
    return resolve(document, document.get("vars", {}))


def functions() -> dict[str, dict[str, Any]]:
    """Each fc3 resource's resolved props, by resource name."""
    return {name: resource["props"] for name, resource in load()["resources"].items()}


def cron_period_seconds(expression: str) -> int:
    match = re.fullmatch(r"@every (\d+)([smh])", expression)
    assert match, f"harvest's cron {expression!r}: expected '@every <n>m' to bound its event age"
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


# --------------------------------------------------------------------------- the fc3 schema


def test_every_resource_validates_against_the_fc3_schema() -> None:
    document = load()
    assert document["edition"] == "3.0.0"
    assert set(document["resources"]) == {"push", "harvest", "callback"}
    for name, resource in document["resources"].items():
        assert resource["component"] == "fc3", name
        jsonschema.Draft7Validator(SCHEMA).validate(resource["props"])
        # the schema takes any trigger config for any trigger type (anyOf): check each against its own
        for trigger in resource["props"].get("triggers", []):
            definition = {
                "$ref": f"#/definitions/{TRIGGER_DEFINITIONS[trigger['triggerType']]}",
                "definitions": SCHEMA["definitions"],
            }
            jsonschema.Draft7Validator(definition).validate(trigger["triggerConfig"])


def test_triggers_are_the_ones_the_handlers_translate() -> None:
    document = raw()
    triggers = {name: resource["props"]["triggers"] for name, resource in document["resources"].items()}
    assert {name: [t["triggerType"] for t in ts] for name, ts in triggers.items()} == {
        "push": ["oss"],
        "harvest": ["timer"],
        "callback": ["http"],
    }
    oss = triggers["push"][0]["triggerConfig"]
    assert sorted(oss["events"]) == sorted(
        f"oss:ObjectCreated:{e}" for e in ("PutObject", "PostObject", "CompleteMultipartUpload", "CopyObject")
    )
    assert oss["filter"]["key"] == {"prefix": "${vars.recordingPrefix}", "suffix": "${vars.recordingSuffix}"}
    timer = triggers["harvest"][0]["triggerConfig"]
    assert timer["cronExpression"] == "${vars.harvestCron}" and timer["enable"] is True
    http = triggers["callback"][0]["triggerConfig"]
    assert http["authType"] == "anonymous" and sorted(http["methods"]) == ["GET", "POST"]


# --------------------------------------------------------------------------- handlers


def test_every_handler_exists_and_its_module_imports() -> None:
    wanted = []
    for name, props in functions().items():
        module, _, function = props["handler"].rpartition(".")
        path = ROOT / props["code"] / f"{module}.py"
        assert path.is_file(), f"{name}: {path} missing"
        names = [function]
        initializer = props.get("instanceLifecycleConfig", {}).get("initializer", {}).get("handler")
        if initializer:
            init_module, _, init_function = initializer.rpartition(".")
            assert init_module == module, f"{name}: initializer in another module"
            names.append(init_function)
        wanted.append((name, str(path), names))
    # a fresh interpreter with only the repo's shared/ added: the module imports as FC loads it
    code = (
        "import importlib.util, json, sys\n"
        "found = {}\n"
        f"for name, path, names in {wanted!r}:\n"
        "    spec = importlib.util.spec_from_file_location('fc_' + name, path)\n"
        "    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "    found[name] = [n for n in names if callable(getattr(module, n, None))]\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT / "shared"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {name: names for name, _, names in wanted}


# --------------------------------------------------------------------------- environment


def test_environment_variables_are_known_settings() -> None:
    for name, props in functions().items():
        unknown = set(props.get("environmentVariables", {})) - KNOWN_ENV
        assert not unknown, f"{name}: not qcflow settings: {sorted(unknown)}"


def test_env_references_name_known_settings() -> None:
    """``${env('X')}`` reads the deployer's shell: only qcflow's own settings, by their names."""
    text = (ROOT / "s.yaml").read_text()
    references = re.findall(r"\$\{env\(\s*['\"]([^'\"]+)['\"]", text)
    assert references, "expected the CCC instance id from the deployer's environment"
    assert set(references) <= KNOWN_ENV, sorted(set(references) - KNOWN_ENV)
    for name, props in raw()["resources"].items():
        for key, value in props["props"].get("environmentVariables", {}).items():
            for referenced in re.findall(r"\$\{env\(\s*['\"]([^'\"]+)['\"]", str(value)):
                assert referenced == key, f"{name}: {key} reads {referenced} from the deployer's environment"


def test_each_function_environment_is_valid_settings() -> None:
    """The values parse as the settings model's types (placeholders stand for deploy-time values)."""
    for name, props in functions().items():
        settings = load_settings(environ=props.get("environmentVariables", {}))
        assert settings.store.url.startswith("oss://"), name
        assert settings.store.oss_internal is True, name


def test_no_secret_in_the_file() -> None:
    text = (ROOT / "s.yaml").read_text()
    assert not re.search(r"LTAI[0-9A-Za-z]{8,}", text), "an AccessKey id literal"
    assert not re.search(r"(?i)ALIBABA_CLOUD_ACCESS_KEY_(ID|SECRET)|SECURITY_TOKEN", text)
    assert not re.search(r"(?i)access_?key_?secret\s*:\s*\S", text)
    for name, resource in raw()["resources"].items():
        for key, value in resource["props"].get("environmentVariables", {}).items():
            # a secret in FC's environment is readable by anyone who can read the function's config;
            # the callback token (issue 25) is the exception: from the deployer's shell, never a literal
            if key in ("QCFLOW_CALLBACK_TOKEN", "QCFLOW_CALLBACK_PREVIOUS_TOKEN"):
                assert value == f"${{env('{key}', '')}}", f"{name}: {key} must come from the deployer's shell"
                continue
            assert not re.search(r"SECRET|PASSWORD|TOKEN", key), f"{name}: {key} belongs in a secret store"


def test_harvest_lease_outlives_its_timeout() -> None:
    harvest = functions()["harvest"]
    lease = load_settings(environ=harvest["environmentVariables"]).harvest.lease_seconds
    assert lease > harvest["timeout"], "an overlapping tick could take the lease of a run still working"


def test_push_sends_the_callback_function_url_to_sca() -> None:
    document = raw()
    env = document["resources"]["push"]["props"]["environmentVariables"]
    # fc3's info carries the HTTP trigger's URL as url.system_url (src/subCommands/info); `info`, not
    # `output`: s runs callback's info before push, so `s push deploy` alone resolves it too (issue 22 #10)
    assert env["QCFLOW_PUSH_CALLBACK_URL"] == "${resources.callback.info.url.system_url}"
    # an info reference does not order the steps (only output ones do): the flow deploys callback first
    order = [group for group in document["flow"]["deploy"]]
    assert order.index(["callback"]) < order.index(["push"])


def test_recordings_are_not_under_qcflow_own_prefix() -> None:
    """The OSS trigger must not fire on what qcflow writes (results, state): no self-trigger."""
    document = raw()
    variables = document["vars"]
    recording_prefix, store_prefix = variables["recordingPrefix"], variables["storePrefix"].rstrip("/") + "/"
    assert recording_prefix, "an empty prefix would trigger push on qcflow's own writes"
    assert not store_prefix.startswith(recording_prefix) and not recording_prefix.startswith(store_prefix)
    push = functions()["push"]
    env, trigger = push["environmentVariables"], push["triggers"][0]
    assert env["QCFLOW_RECORDING_PREFIX"] == trigger["triggerConfig"]["filter"]["key"]["prefix"]
    assert trigger["triggerConfig"]["filter"]["key"]["suffix"] in env["QCFLOW_RECORDING_SUFFIXES"].split(",")
    bucket = trigger["sourceArn"].rsplit(":", 1)[1]
    assert env["QCFLOW_RECORDINGS_URL"] == f"oss://{bucket}"
    assert env["QCFLOW_STORE"] == f"oss://{bucket}/{variables['storePrefix']}"


# --------------------------------------------------------------------------- the layer


def test_runtime_is_the_layer_python() -> None:
    for name, props in functions().items():
        assert props["runtime"] == LAYER.RUNTIME, name


def test_every_function_uses_this_build_of_the_layer() -> None:
    """The layer resource publishes build/ and gives the ARN of its latest version (issue 22 #12): no
    ${file()} (every command failed without build/) and no assumed version 1."""
    document = raw_with_layer()
    assert "${file(" not in (ROOT / "s.yaml").read_text()
    layer = document["resources"]["layer"]
    assert layer["component"] == LAYER_COMPONENT and (ROOT / LAYER_COMPONENT / "index.js").is_file()
    build = LAYER.Paths(Path("build"))
    assert layer["props"] == {
        "region": "${vars.region}",
        "build": f"./{build.zip.parent.as_posix()}",
        "compatibleRuntime": LAYER.RUNTIME,
    }
    component = (ROOT / LAYER_COMPONENT / "index.js").read_text()
    assert f"const PREFIX = '{LAYER.LAYER_PREFIX}';" in component
    assert f"'{build.zip.name}'" in component and f"'{build.id_file.name}'" in component
    for name, resource in raw()["resources"].items():
        assert resource["props"]["layers"] == ["${resources.layer.info.arn}"], name
        assert not [a for a in resource["actions"]["pre-deploy"] if "component" in a], name
    # a build older than its sources stops the deploy before anything is published
    assert {"run": "python3 scripts/build_layer.py --check", "path": "./"} in document["actions"]["pre-deploy"]


def test_layer_id_file_has_no_newline_to_break_the_layer_name(tmp_path: Path) -> None:
    paths = LAYER.Paths(tmp_path)
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "python").mkdir()
    (tmp_path / "layer" / "python" / "m.py").write_text("x = 1\n")
    LAYER.write_zip(paths.tree, paths.zip)
    identifier = LAYER.layer_id(paths.zip)
    assert re.fullmatch(r"[0-9a-f]{16}", identifier)
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", LAYER.layer_name(identifier))


# --------------------------------------------------------------------------- sizing and async


def test_standard_runtime_has_no_instance_concurrency() -> None:
    """FC 3.0's standard runtimes do not support instance concurrency (custom runtimes do)."""
    for name, props in functions().items():
        if STANDARD_RUNTIMES.match(props["runtime"]):
            assert props.get("instanceConcurrency", 1) == 1, name


def test_cpu_and_memory_are_a_valid_fc3_size() -> None:
    for name, props in functions().items():
        cpu, memory_gb = props["cpu"], props["memorySize"] / 1024
        assert round(cpu / 0.05, 6).is_integer(), f"{name}: vCPU in steps of 0.05"
        assert 1 <= memory_gb / cpu <= 4, f"{name}: memory (GB) must be 1 to 4 times the vCPUs"
        assert props["diskSize"] == 512, name


def test_async_invocation_is_configured_for_push_and_harvest() -> None:
    everything = functions()
    for name in ("push", "harvest"):
        config = everything[name]["asyncInvokeConfig"]
        assert isinstance(config["maxAsyncRetryAttempts"], int), name
        assert config["maxAsyncEventAgeInSeconds"] > 0, name
        assert config["destinationConfig"]["onFailure"]["destination"].startswith("acs:mns:"), name
    assert everything["push"]["asyncInvokeConfig"]["maxAsyncRetryAttempts"] >= 1
    # a harvest event older than one tick is stale: a newer tick has run (or is running)
    period = cron_period_seconds(everything["harvest"]["triggers"][0]["triggerConfig"]["cronExpression"])
    assert everything["harvest"]["asyncInvokeConfig"]["maxAsyncEventAgeInSeconds"] <= period


def test_names_match_the_infra_stack() -> None:
    """infra/ creates what s.yaml names (roles, logstore, queue, prefixes): same defaults."""
    hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is a test dependency")
    options = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    with (ROOT / "infra" / "variables.tf").open(encoding="utf-8") as handle:
        blocks = hcl2.load(handle, serialization_options=options)["variable"]
    infra = {name: body.get("default") for block in blocks for name, body in block.items()}
    document = raw()
    variables = document["vars"]
    assert variables["region"] == infra["region"]
    for function in ("push", "harvest", "callback"):  # one role per function
        assert variables[f"{function}Role"] == infra[f"{function}_role_name"], function
    assert variables["triggerRole"] == infra["trigger_role_name"]
    assert variables["logstore"] == infra["logstore"]
    assert variables["dlqQueue"] == infra["dlq_name"]
    assert variables["storePrefix"] == infra["store_prefix"]
    assert variables["recordingPrefix"] == infra["recordings_prefix"]
    assert document["resources"]["push"]["props"]["functionName"] == infra["push_function_name"]
    for name, resource in document["resources"].items():
        props = resource["props"]
        assert props["role"] == f"acs:ram::${{config('AccountID')}}:role/${{vars.{name}Role}}", name
        # infra's default project name (log_project empty): qcflow-<account_id>-<region>
        assert props["logConfig"]["project"] == "qcflow-${config('AccountID')}-${vars.region}", name
        assert props["logConfig"]["logstore"] == "${vars.logstore}", name
    trigger = document["resources"]["push"]["props"]["triggers"][0]
    assert trigger["invocationRole"] == "acs:ram::${config('AccountID')}:role/${vars.triggerRole}"
