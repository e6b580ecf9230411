"""Key rules shared by both adapters."""

from __future__ import annotations

import pytest

from qcflow.errors import PermanentError
from qcflow.store.keys import (
    InvalidKeyError,
    InvalidMetadataError,
    join_key,
    validate_claim_token,
    validate_content_type,
    validate_key,
    validate_metadata,
    validate_prefix,
)


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


@pytest.mark.parametrize("text", ["a\ud800", "ok/\udcff", "\udfff"])
def test_lone_surrogates_are_invalid(text: str) -> None:
    with pytest.raises(InvalidKeyError, match="lone surrogate"):
        validate_key(text)
    with pytest.raises(InvalidKeyError, match="lone surrogate"):
        validate_prefix(text)


def test_metadata_and_content_type_without_surrounding_spaces() -> None:
    assert validate_metadata({"a": "", "b": "x y"}) == {"a": "", "b": "x y"}
    for value in (" x", "x ", " "):
        with pytest.raises(InvalidMetadataError, match="space"):
            validate_metadata({"a": value})
        with pytest.raises(InvalidMetadataError):
            validate_content_type(f"{value}text/plain{value}")


def test_claim_tokens() -> None:
    assert validate_claim_token(None) is None
    assert validate_claim_token("run-1:job/7") == "run-1:job/7"
    for bad in ("", "a b", "é", "x" * 257, b"bytes"):
        with pytest.raises(InvalidMetadataError):
            validate_claim_token(bad)  # type: ignore[arg-type]
