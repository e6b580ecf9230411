"""The official Alibaba Cloud SDKs as test oracles (never imported by the runtime).

``capture_sdk_request`` runs an official SDK call with a fixed clock and nonce and its
transport intercepted (``DaraCore.do_action``), returning the exact request it would
have put on the wire: method, path, query, headers (Authorization included).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from unittest import mock

from alibabacloud_ccc20200701 import models as ccc_models
from alibabacloud_ccc20200701.client import Client as CccSdk
from alibabacloud_qualitycheck20190115 import models as sca_models
from alibabacloud_qualitycheck20190115.client import Client as ScaSdk
from alibabacloud_tea_openapi import utils_models
from alibabacloud_tea_openapi.utils import Utils
from darabonba.core import DaraCore


@dataclass
class SdkRequest:
    method: str
    pathname: str
    query: dict[str, str]
    headers: dict[str, str]


class _Captured(Exception):
    pass


def sdk_config(endpoint: str, key_id: str, secret: str, token: str | None = None, protocol: str = "https") -> Any:
    config = utils_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=token,
        endpoint=endpoint,
        protocol=protocol,
        region_id="cn-hangzhou",
    )
    return config


def ccc_sdk(endpoint: str, key_id: str, secret: str, token: str | None = None, protocol: str = "https") -> CccSdk:
    return CccSdk(sdk_config(endpoint, key_id, secret, token, protocol))


def sca_sdk(endpoint: str, key_id: str, secret: str, token: str | None = None, protocol: str = "https") -> ScaSdk:
    return ScaSdk(sdk_config(endpoint, key_id, secret, token, protocol))


@contextlib.contextmanager
def frozen_sdk(timestamp: str, nonce: str) -> Iterator[list[SdkRequest]]:
    """Fix the SDK's clock and nonce and stop its transport; yields the captured requests."""
    captured: list[SdkRequest] = []

    def fake_do_action(request: Any, runtime: Any = None) -> Any:
        captured.append(
            SdkRequest(
                method=request.method,
                pathname=request.pathname,
                query={k: v for k, v in (request.query or {}).items() if v is not None},
                headers={k: v for k, v in request.headers.items() if v is not None},
            )
        )
        raise _Captured()

    with mock.patch.object(Utils, "get_timestamp", staticmethod(lambda: timestamp)), mock.patch.object(
        Utils, "get_nonce", staticmethod(lambda: nonce)
    ), mock.patch.object(DaraCore, "do_action", staticmethod(fake_do_action)):
        yield captured


def capture(call: Callable[[], Any], timestamp: str, nonce: str) -> SdkRequest:
    with frozen_sdk(timestamp, nonce) as captured:
        try:
            call()
        except Exception:  # the SDK wraps our interception in its own exception
            pass
    assert captured, "the SDK sent nothing"
    return captured[0]


def capture_get_upload_audio_data_params(sdk: CccSdk, contact_id: str, instance_id: str, ts: str, nonce: str) -> SdkRequest:
    request = ccc_models.GetUploadAudioDataParamsRequest(contact_id=contact_id, instance_id=instance_id)
    return capture(lambda: sdk.get_upload_audio_data_params(request), ts, nonce)


def capture_upload_audio_data(sdk: ScaSdk, json_str: str, base_me_agent_id: int | None, ts: str, nonce: str) -> SdkRequest:
    request = sca_models.UploadAudioDataRequest(json_str=json_str, base_me_agent_id=base_me_agent_id)
    return capture(lambda: sdk.upload_audio_data(request), ts, nonce)


def capture_get_result(sdk: ScaSdk, json_str: str, base_me_agent_id: int | None, ts: str, nonce: str) -> SdkRequest:
    request = sca_models.GetResultRequest(json_str=json_str, base_me_agent_id=base_me_agent_id)
    return capture(lambda: sdk.get_result(request), ts, nonce)
