"""Signature checks, as Alibaba Cloud's API gateway does them.

ACS3-HMAC-SHA256 (what current SDKs send) is verified by rebuilding the canonical request
from whatever ``SignedHeaders`` list the caller sent (the official SDK signs more headers
than the minimum, and varies them), after decoding the query and re-encoding it canonically
(the SDK puts ``+`` for spaces on the wire). The older RPC signature (``Signature`` in the
query, HMAC-SHA1, for ``Action=…`` callers) is verified too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote

from qcflow.acs import signer
from qcflow.tools.sandbox.errors import ApiFailure

REQUIRED_SIGNED = (
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
)


@dataclass
class IncomingRequest:
    """What the verifier needs of an HTTP request (header names lower-cased, values as sent)."""

    method: str
    path: str
    query: dict[str, str]
    headers: list[tuple[str, str]]
    body: bytes
    form: dict[str, str]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True)
class Caller:
    """Who called and what, as far as the signature vouches for it."""

    access_key_id: str
    action: str
    version: str


def same_text(expected: str, given: str) -> bool:
    """Constant-time comparison that also copes with non-ASCII input (a forged value)."""
    return hmac.compare_digest(expected.encode("utf-8", "surrogateescape"), given.encode("utf-8", "surrogateescape"))


class Verifier:
    """Accepts one key pair (the sandbox's account) and refuses replays and stale requests."""

    def __init__(self, access_key_id: str, access_key_secret: str, max_skew_seconds: float = 900.0) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.max_skew_seconds = max_skew_seconds
        self._nonces: OrderedDict[str, float] = OrderedDict()  # in arrival order, for cheap expiry

    def verify(self, request: IncomingRequest, now: float | None = None) -> Caller:
        """Who is calling which action (from signed material only), or an ``ApiFailure``."""
        now = time.time() if now is None else now
        if request.header("authorization"):
            return self._verify_acs3(request, now)
        if "Signature" in request.query or "Signature" in request.form:
            return self._verify_rpc(request, now)
        raise ApiFailure(
            400,
            "MissingAuthorization",
            "The request is not signed: no Authorization header and no Signature parameter.",
        )

    # ------------------------------------------------------------------ ACS3

    def _verify_acs3(self, request: IncomingRequest, now: float) -> Caller:
        try:
            auth = signer.parse_authorization(request.header("authorization") or "")
        except ValueError as exc:
            raise ApiFailure(
                400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards: {exc}."
            ) from None
        if auth.access_key_id != self.access_key_id:
            raise ApiFailure(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        missing = [name for name in REQUIRED_SIGNED if name not in auth.signed_headers or request.header(name) is None]
        if request.header("x-acs-security-token") is not None and "x-acs-security-token" not in auth.signed_headers:
            missing.append("x-acs-security-token")
        if missing:
            raise ApiFailure(
                400,
                "IncompleteSignature",
                f"The request signature does not cover the required headers: {', '.join(missing)}.",
            )
        self._check_time(request.header("x-acs-date") or "", now)
        payload_hash = request.header("x-acs-content-sha256") or ""
        if payload_hash != hashlib.sha256(request.body).hexdigest():
            raise ApiFailure(400, "SignatureDoesNotMatch", "x-acs-content-sha256 does not match the request body.")
        headers: dict[str, str] = {}
        for name in auth.signed_headers:
            values = request.header_values(name)
            if not values:
                raise ApiFailure(400, "IncompleteSignature", f"Signed header {name} is not in the request.")
            headers[name] = ",".join(sorted(value.strip() for value in values))
        canonical, _ = signer.canonical_request(
            request.method, request.path or "/", request.query, headers, payload_hash
        )
        expected = signer.signature(self.access_key_secret, canonical)
        if not same_text(expected, auth.signature):
            string_to_sign = f"{signer.ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
            # Like the real gateway, show the string to sign (a hash), never the canonical
            # request: it holds the STS token, and error messages end up in logs.
            raise ApiFailure(
                400,
                "SignatureDoesNotMatch",
                f"Specified signature does not match our calculation. server string to sign is:{string_to_sign}",
            )
        self._check_nonce(request.header("x-acs-signature-nonce") or "", now)
        return Caller(auth.access_key_id, request.header("x-acs-action") or "", request.header("x-acs-version") or "")

    # ------------------------------------------------------------------ RPC (HMAC-SHA1)

    def _verify_rpc(self, request: IncomingRequest, now: float) -> Caller:
        params = {**request.query, **request.form}
        if params.get("AccessKeyId") != self.access_key_id:
            raise ApiFailure(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if params.get("SignatureMethod") != "HMAC-SHA1":
            raise ApiFailure(400, "InvalidParameter.SignatureMethod", "Only HMAC-SHA1 is supported for RPC signatures.")
        self._check_time(params.get("Timestamp", ""), now)
        given = params.pop("Signature", "")
        canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()))
        string_to_sign = f"{request.method.upper()}&{_enc('/')}&{_enc(canonical)}"
        digest = hmac.new((self.access_key_secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()
        if not same_text(base64.b64encode(digest).decode(), given):
            digest_hex = hashlib.sha256(string_to_sign.encode()).hexdigest()  # the text holds SecurityToken
            raise ApiFailure(
                400,
                "SignatureDoesNotMatch",
                "Specified signature does not match our calculation "
                f"(sha256 of the server's string to sign: {digest_hex}).",
            )
        self._check_nonce(params.get("SignatureNonce", ""), now)
        # the action and version are what was signed, never an unsigned x-acs-* header
        for name in ("Action", "Version"):
            if not params.get(name):
                raise ApiFailure(400, f"MissingParameter.{name}", f"{name} is mandatory for this request.")
        return Caller(self.access_key_id, params["Action"], params["Version"])

    # ------------------------------------------------------------------ shared

    def _check_time(self, stamp: str, now: float) -> None:
        try:
            moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            raise ApiFailure(
                400, "InvalidTimeStamp.Format", f"Specified time stamp or date value {stamp!r} is not well formatted."
            ) from None
        if abs(now - moment) > self.max_skew_seconds:
            raise ApiFailure(
                400,
                "InvalidTimeStamp.Expired",
                f"Specified time stamp or date value is expired (request {stamp}, "
                f"server {datetime.fromtimestamp(now, timezone.utc):%Y-%m-%dT%H:%M:%SZ}).",
            )

    def _check_nonce(self, nonce: str, now: float) -> None:
        if not nonce:
            raise ApiFailure(400, "MissingSignatureNonce", "SignatureNonce is mandatory.")
        horizon = now - self.max_skew_seconds  # older requests fail the time check anyway
        while self._nonces:
            oldest, seen = next(iter(self._nonces.items()))
            if seen >= horizon:
                break
            del self._nonces[oldest]
        if nonce in self._nonces:
            raise ApiFailure(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces[nonce] = now


def _enc(value: str) -> str:
    return quote(value, safe="~", encoding="utf-8")


def parse_params(raw: bytes | str) -> dict[str, str]:
    """Decode a query string or form body (``+`` and ``%20`` both mean space); last value wins."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return dict(parse_qsl(text, keep_blank_values=True))
