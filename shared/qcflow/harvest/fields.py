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

Order: the fields of the rule first, then the requested ones, each once.
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


def with_fields(requested: str | Iterable[str], always: Iterable[str]) -> str:
    """``always``, then the names of ``requested`` (a comma list, or names) not already there."""
    names: list[str] = list(always)
    for raw in requested.split(",") if isinstance(requested, str) else requested:
        name = raw.strip()
        if name and name not in names:
            names.append(name)
    return ",".join(names)


def required_fields_with_identity(requested: str) -> str:
    """``requested`` as a comma list that surely holds ``status`` and ``taskId``."""
    return with_fields(requested, IDENTITY_FIELDS)


def required_fields(settings: HarvestSettings) -> str:
    """``QCFLOW_HARVEST_REQUIRED_FIELDS`` plus what the reader and the writer cannot do without."""
    return with_fields(settings.required_fields, ALWAYS_REQUIRED)
