"""The Tea list wrappers of Alibaba Cloud RPC responses, removed and put back.

RPC APIs that speak XML-shaped JSON wrap each array in an object holding one key:
``"HitResult": {"HitResult": [...]}``, but the inner key often differs from the field
(``"Hits": {"Hit": [...]}``). The map below is read off the official SDK's models
(``alibabacloud_qualitycheck20190115/models/_get_result_response_body.py``): a generic
"X: {X: [...]}" rule would miss ``Hits``/``KeyWords``/``ReviewHistoryList`` and would
mangle ``Cid``, which is a plain string in some objects and a wrapped list in others.
A value is unwrapped only when it has exactly the wrapper's shape.
"""

from __future__ import annotations

from typing import Any

#: field name → the key that wraps its array (GetResult; UploadAudioData has no arrays).
TEA_LIST_WRAPPERS: dict[str, str] = {
    "ResultInfo": "ResultInfo",
    "AsrResult": "AsrResult",
    "HitResult": "HitResult",
    "Hits": "Hit",
    "KeyWords": "KeyWord",
    "Cid": "Cid",
    "Conditions": "Conditions",
    "Operators": "Operator",
    "Keywords": "Keyword",
    "Excludes": "Exclude",
    "Intents": "Intent",
    "HitScore": "HitScore",
    "SchemeIdList": "SchemeIdList",
    "SchemeNameList": "SchemeNameList",
    "ReviewHistoryList": "ReviewHistory",
    "ReviewRightRule": "ReviewRightRule",
    "ReviewTypeIdList": "ReviewTypeIdList",
    "ReviewKeyIdList": "ReviewKeyIdList",
}


def unwrap(value: Any) -> Any:
    """A copy of ``value`` with every known wrapper replaced by its plain list."""
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        inner = TEA_LIST_WRAPPERS.get(key)
        if inner is not None and isinstance(item, dict) and len(item) == 1 and isinstance(item.get(inner), list):
            item = item[inner]
        out[key] = unwrap(item)
    return out


def wrap(value: Any) -> Any:
    """The inverse of ``unwrap``: plain lists under known fields put back in their wrapper."""
    if isinstance(value, list):
        return [wrap(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        inner = TEA_LIST_WRAPPERS.get(key)
        if inner is not None and isinstance(item, list):
            out[key] = {inner: wrap(item)}
        else:
            out[key] = wrap(item)
    return out
