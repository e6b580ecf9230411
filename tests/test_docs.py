"""The README stays true to the code: every setting and sandbox option it must document."""

from __future__ import annotations

import re
from pathlib import Path

from qcflow.config import VARIABLES, env_name

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md"))}


def test_every_setting_is_documented() -> None:
    """docs/configuration.md is generated from the models (tests/test_config.py keeps it so)."""
    configuration = DOCS["configuration.md"]
    missing = [env_name(name) for name in VARIABLES if f"`{env_name(name)}`" not in configuration]
    assert not missing, missing


def test_documented_settings_exist() -> None:
    documented = set(re.findall(r"`(QCFLOW_[A-Z_]+)`", README + "".join(DOCS.values())))
    known = {env_name(name) for name in VARIABLES}
    assert documented <= known, documented - known


def _help_texts() -> dict[str, str]:
    from click.testing import CliRunner

    from qcflow.tools.cli import main

    runner = CliRunner()
    texts = {"sandbox serve": runner.invoke(main, ["sandbox", "serve", "--help"]).output}
    for name in main.commands:
        if name != "sandbox":
            texts[name] = runner.invoke(main, [name, "--help"]).output
    return texts


def test_sandbox_options_in_readme_exist() -> None:
    section = DOCS["sandbox.md"]
    help_text = _help_texts()["sandbox serve"]
    for option in set(re.findall(r"`(--[a-z-]+)", section)):
        assert option in help_text, option


def test_every_option_in_readme_exists_in_some_command() -> None:
    helps = "\n".join(_help_texts().values())
    for option in set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", README)):
        if option in ("--platform", "--only-binary", "--recursive", "--screenshot"):  # pip, terraform, benchmarks/report.py
            continue
        assert option in helps, option


def test_two_setup_commands() -> None:
    assert "make test" in README and "make demo" in README
