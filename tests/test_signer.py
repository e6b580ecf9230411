"""The signer and request builder against the official SDK, byte for byte."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcflow.acs import signer
from qcflow.acs.client import AcsClient
from qcflow.ccc import CCC_VERSION
from qcflow.credentials import Credentials
from qcflow.sca import SCA_VERSION
from tests.support import sdk_oracle

TS = "2026-11-23T10:22:32Z"
FIXED = datetime(2026, 11, 23, 10, 22, 32, tzinfo=timezone.utc)


def test_published_v3_vector() -> None:
    """The official V3 documentation's worked example."""
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-version": "2014-05-26",
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-content-sha256": signer.EMPTY_SHA256,
    }
    query = {"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"}
    canonical, signed = signer.canonical_request("POST", "/", query, headers, signer.EMPTY_SHA256)
    assert signed == "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    assert hashlib.sha256(canonical.encode()).hexdigest() == "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    auth = signer.authorization("YourAccessKeyId", "YourAccessKeySecret", "POST", "/", query, headers, signer.EMPTY_SHA256)
    assert auth == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=" + signed
        + ",Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


def test_percent_encoding_matches_rfc3986() -> None:
    assert signer.percent_encode("a b*c~d/e+f") == "a%20b%2Ac~d%2Fe%2Bf"
    assert signer.percent_encode("张") == "%E5%BC%A0"


def test_parse_authorization_roundtrip() -> None:
    parsed = signer.parse_authorization("ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-date,Signature=abc")
    assert parsed.access_key_id == "AK" and parsed.signed_headers == ("host", "x-acs-date") and parsed.signature == "abc"
    with pytest.raises(ValueError, match="unsupported"):
        signer.parse_authorization("HMAC-SHA1 Credential=AK")
    with pytest.raises(ValueError, match="lacks"):
        signer.parse_authorization("ACS3-HMAC-SHA256 Credential=AK")


def _ours(endpoint: str, version: str, creds: Credentials, user_agent: str, nonce: str) -> AcsClient:
    return AcsClient(
        endpoint=endpoint, version=version, credentials=lambda: creds, user_agent=user_agent, clock=lambda: FIXED, nonce=lambda: nonce
    )


def _assert_same_request(ours_client: AcsClient, action: str, query: dict, method: str, sdk: sdk_oracle.SdkRequest) -> None:
    ours = ours_client.build_request(action, query, method=method)
    assert ours.method == sdk.method
    url = urlsplit(str(ours.url))
    assert url.path == sdk.pathname == "/"
    assert dict(parse_qsl(url.query, keep_blank_values=True)) == sdk.query
    # On the wire we send the canonical encoding itself, so the server sees what was signed.
    assert url.query == signer.canonical_query(sdk.query)
    sdk_auth = signer.parse_authorization(sdk.headers["Authorization"])
    our_auth = signer.parse_authorization(ours.headers["Authorization"])
    assert our_auth.signed_headers == sdk_auth.signed_headers
    sdk_lower = {k.lower(): v for k, v in sdk.headers.items()}
    for name in sdk_auth.signed_headers:
        assert ours.headers[name] == sdk_lower[name], name
    assert ours.headers["Authorization"] == sdk.headers["Authorization"]


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)
special = st.sampled_from(["job-1 2", "a*b", "~x~", "p/q", "张三 李四", "+%&=?#", " lead", "x" * 500])
values = st.one_of(texts, special)
json_strs = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=3000),
    st.builds(lambda n, s: '{"pageSize": %d, "callId": "%s"}' % (n, s.replace('"', "")), st.integers(1, 99), values),
)
key_ids = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789", min_size=8, max_size=30)
secrets_ = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40)
tokens = st.one_of(st.none(), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=20, max_size=300))
nonces = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
endpoints = st.sampled_from(["ccc.cn-shanghai.aliyuncs.com", "qualitycheck.cn-hangzhou.aliyuncs.com", "127.0.0.1:8790"])
oracle_settings = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@oracle_settings
@given(contact_id=values, instance_id=values, key_id=key_ids, secret=secrets_, token=tokens, nonce=nonces, endpoint=endpoints)
def test_get_upload_audio_data_params_matches_sdk(contact_id, instance_id, key_id, secret, token, nonce, endpoint) -> None:
    sdk = sdk_oracle.ccc_sdk(endpoint, key_id, secret, token)
    captured = sdk_oracle.capture_get_upload_audio_data_params(sdk, contact_id, instance_id, TS, nonce)
    ours = _ours(endpoint, CCC_VERSION, Credentials(key_id, secret, token), captured.headers["user-agent"], nonce)
    _assert_same_request(ours, "GetUploadAudioDataParams", {"ContactId": contact_id, "InstanceId": instance_id}, "GET", captured)


@pytest.mark.parametrize(
    ("action", "capture"),
    [("UploadAudioData", sdk_oracle.capture_upload_audio_data), ("GetResult", sdk_oracle.capture_get_result)],
)
@oracle_settings
@given(json_str=json_strs, agent=st.one_of(st.none(), st.integers(1, 10**12)), key_id=key_ids, secret=secrets_, token=tokens, nonce=nonces, endpoint=endpoints)
def test_sca_apis_match_sdk(action, capture, json_str, agent, key_id, secret, token, nonce, endpoint) -> None:
    sdk = sdk_oracle.sca_sdk(endpoint, key_id, secret, token)
    captured = capture(sdk, json_str, agent, TS, nonce)
    ours = _ours(endpoint, SCA_VERSION, Credentials(key_id, secret, token), captured.headers["user-agent"], nonce)
    _assert_same_request(ours, action, {"BaseMeAgentId": agent, "JsonStr": json_str}, "POST", captured)


@pytest.mark.parametrize("token", [None, "STS.token-value/with+odd=chars"])
def test_typed_clients_build_the_sdk_request(token) -> None:
    """The typed clients' own JsonStr (from the models) signs like the SDK's request with that JsonStr."""
    from qcflow.models.sca import GetResultQuery

    query = GetResultQuery(page_size=99, start_time="2026-11-20 00:00:00", end_time="2026-11-20 01:00:00", required_fields=["taskId", "status"])
    json_str = query.to_json_str()
    sdk = sdk_oracle.sca_sdk("qualitycheck.cn-hangzhou.aliyuncs.com", "AKID1234", "secret", token)
    captured = sdk_oracle.capture_get_result(sdk, json_str, 42, TS, "0" * 32)
    ours = _ours("qualitycheck.cn-hangzhou.aliyuncs.com", SCA_VERSION, Credentials("AKID1234", "secret", token), captured.headers["user-agent"], "0" * 32)
    _assert_same_request(ours, "GetResult", {"BaseMeAgentId": 42, "JsonStr": json_str}, "POST", captured)
