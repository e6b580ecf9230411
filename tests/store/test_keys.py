"""Key rules shared by both adapters."""

from __future__ import annotations

import pytest

from qcflow.errors import PermanentError
from qcflow.store.keys import InvalidKeyError, join_key, validate_key, validate_prefix


@pytest.mark.parametrize("key", [
    "a", "state/ledger/job-123.json", "results/dt=2024-01-01/hour=00/part-0001.jsonl.gz",
    "with space", "plus+", "100%", "ünïcödé/日本語", ".hidden", "a..b", "...", "x" * 1023,
])
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(("key", "why"), [
    ("", "non-empty"), ("/a", "absolute"), ("a//b", "empty path segment"), ("a/", "empty path segment"),
    ("..", "'..' segment"), ("a/../../b", "'..' segment"), ("./a", "'.' segment"), ("a\\b", "backslash"),
    ("a\x00b", "control"), ("a\u0085b", "control"), (".qcflow-meta/x", "reserved"), ("é" * 512, "1023"),
])
def test_invalid_keys(key: str, why: str) -> None:
    with pytest.raises(InvalidKeyError, match=why) as info:
        validate_key(key)
    assert isinstance(info.value, PermanentError)


def test_non_string_key() -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(None)  # type: ignore[arg-type]


def test_prefixes() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix("state/") == "state/"
    assert validate_prefix("results/dt=2024-") == "results/dt=2024-"
    for bad in ("/", "a//", "../", "a/./"):
        with pytest.raises(InvalidKeyError):
            validate_prefix(bad)


def test_join_stays_under_prefix() -> None:
    assert join_key("", "a/b") == "a/b"
    assert join_key("qcflow/prod", "state/x") == "qcflow/prod/state/x"
    with pytest.raises(InvalidKeyError):
        join_key("p" * 1000, "k" * 30)
