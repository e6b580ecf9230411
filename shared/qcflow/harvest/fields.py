"""The GetResult fields a harvest read always asks for, whatever ``QCFLOW_HARVEST_REQUIRED_FIELDS`` says.

One rule, in two tiers, because two parts rely on it:

- ``IDENTITY_FIELDS`` — what any reader of harvest items needs before it can route one:
  ``status`` (an absent status is *unknown*, never "failed": the result is polled again) and
  ``taskId`` (half of a result's identity, and the key to fetch it again). ``WindowReader``
  adds them to every query it makes, so that no read (nor a benchmark's or a test's bare
  reader) can lose them;
- ``ALWAYS_REQUIRED`` — those, plus what the exactly-once writer needs: ``createTimeLong``
  (the upload time: the output partition, hence which commit sequence guards the result —
  without it a result is polled again rather than written under a guessed key),
  ``createTime`` (the upload time's fallback in the record's ``upload_time``) and
  ``recording`` (``Recording.Id``, the other half of a result's identity: one upload of several
  recordings shares a taskId). A harvest pass builds its reader with ``required_fields``.

Order (kept as the service has always been asked): ``status`` and ``taskId`` first, then the
requested fields, then the writer's fields the request lacked; each once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qcflow.config import HarvestSettings

#: What routing an item needs (see the module docstring).
IDENTITY_FIELDS = ("status", "taskId")
#: What the reader and the writer need together (see the module docstring).
ALWAYS_REQUIRED = (*IDENTITY_FIELDS, "createTimeLong", "createTime", "recording")
#: What a review row needs besides: the review's identity and partition (``reviewTimeLong``)
#: and every field a review changes, whatever ``QCFLOW_HARVEST_REQUIRED_FIELDS`` says.
REVIEW_REQUIRED = (
    "reviewTimeLong",
    "reviewTime",
    "reviewType",
    "reviewStatus",
    "reviewResult",
    "reviewHistoryList",
    "score",
    "reviewer",
    "resolver",
    "comments",
)


def with_fields(first: Iterable[str], then: str | Iterable[str], last: Iterable[str] = ()) -> str:
    """The names of ``first``, ``then`` (a comma list, or names) and ``last``, in that order, each once."""
    names: list[str] = []
    for raw in (*first, *(then.split(",") if isinstance(then, str) else then), *last):
        name = raw.strip()
        if name and name not in names:
            names.append(name)
    return ",".join(names)


def required_fields_with_identity(requested: str) -> str:
    """``requested`` as a comma list that surely holds ``status`` and ``taskId``."""
    return with_fields(IDENTITY_FIELDS, requested)


def required_fields(settings: HarvestSettings, *, reviews: bool = False) -> str:
    """``QCFLOW_HARVEST_REQUIRED_FIELDS`` plus what the reader and the writer cannot do without
    (with ``reviews``: what a review row needs too — the review feed, and a callback's fetch
    that may meet a reviewed result)."""
    return with_fields(
        IDENTITY_FIELDS, settings.required_fields, ALWAYS_REQUIRED + (REVIEW_REQUIRED if reviews else ())
    )
