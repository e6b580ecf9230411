"""The callbacks' GetResult share is split over QCFLOW_CALLBACK_MAX_INSTANCES instances: that
number must be the callback function's concurrency cap in s.yaml, or all instances together could
take more than the share (issue 25)."""

from __future__ import annotations

import pytest

from qcflow.config import load_settings
from tests.test_s_yaml import functions


def test_the_callback_instances_the_bucket_assumes_are_the_ones_s_yaml_allows() -> None:
    callback = functions()["callback"]
    cap = (callback.get("concurrencyConfig") or {}).get("reservedConcurrency")
    if cap is None:
        pytest.skip("s.yaml does not cap the callback function's concurrency yet (helper r-deploy adds it)")
    environment = callback.get("environmentVariables") or {}
    setting = {k: str(v) for k, v in environment.items() if k == "QCFLOW_CALLBACK_MAX_INSTANCES"}
    assert load_settings(setting).callback.max_instances == int(cap), "QCFLOW_CALLBACK_MAX_INSTANCES = the cap"
