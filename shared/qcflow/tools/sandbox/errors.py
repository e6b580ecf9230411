"""Errors the sandbox answers with, shaped like Alibaba Cloud's."""

from __future__ import annotations


class ApiFailure(Exception):
    """An answer other than success: HTTP status, the service's ``Code`` and ``Message``.

    ``business`` failures travel as HTTP 200 with ``Success: false`` (SCA's way);
    the others as a plain Alibaba Cloud error body with their HTTP status.
    """

    def __init__(self, status: int, code: str, message: str, *, business: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.business = business


def invalid_parameter(message: str) -> ApiFailure:
    """SCA's way to refuse a JsonStr: HTTP 200, ``Success: false`` (code text UNCONFIRMED)."""
    return ApiFailure(200, "InvalidParameter", message, business=True)
