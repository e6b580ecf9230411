"""s.yaml validates against the fc3 component's own schema (copied from devsapp/fc3, MIT)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from qcflow.config import Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "fc3" / "schema.json").read_text())
TRIGGER_DEFINITIONS = {"oss": "IOssTriggerConfig", "timer": "ITimerTriggerConfig", "http": "IHttpTriggerConfig"}


def resolve(value: Any, variables: dict[str, Any]) -> Any:
    """``${vars.x}`` from ``vars``; other references resolve at deploy time: a placeholder."""
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if isinstance(value, str):
        value = re.sub(r"\$\{vars\.(\w+)\}", lambda m: str(variables[m.group(1)]), value)
        return re.sub(r"\$\{[^}]+\}", "1234567890", value)
    return value


def load() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "s.yaml").read_text())
    return resolve(document, document.get("vars", {}))


def test_every_resource_validates_against_the_fc3_schema() -> None:
    document = load()
    assert document["edition"] == "3.0.0"
    for name, resource in document["resources"].items():
        assert resource["component"] == "fc3", name
        jsonschema.Draft7Validator(SCHEMA).validate(resource["props"])
        for trigger in resource["props"].get("triggers", []):
            definition = {"$ref": f"#/definitions/{TRIGGER_DEFINITIONS[trigger['triggerType']]}", "definitions": SCHEMA["definitions"]}
            jsonschema.Draft7Validator(definition).validate(trigger["triggerConfig"])


def test_environment_variables_are_known_settings() -> None:
    known = {env_name(name) for name in Settings.model_fields}
    for resource in load()["resources"].values():
        assert set(resource["props"].get("environmentVariables", {})) <= known
