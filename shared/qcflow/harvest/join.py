"""The taskId join: the harvest tells the push ledger the taskIds SCA did not tell push.

When SCA answers an upload with a repeated callUuid, push records the submission with its
taskId unknown. The harvest meets that result later (``Recording.Id`` is the ContactId push
sent as ``callId``) and records its taskId in the ledger — once the result's part is visible
(``ResultWriter`` carries the ContactId with the line, to ``committed``), or at once when the
result was written before push learnt it lacked the taskId (``met_written``).

The ledger is asked once per pass which ContactIds lack a taskId; a ledger that cannot be read
or written costs the join, never the harvest (logged, retried by the next pass).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Protocol

from qcflow.errors import QcflowError
from qcflow.harvest import records as rec

log = logging.getLogger("qcflow.harvest")


class TaskIdLedger(Protocol):
    """What the harvest needs of the push ledger (``qcflow.ledger.Ledger`` is one)."""

    def contacts_with_unknown_task(self) -> Iterable[str]:
        """ContactIds submitted whose taskId SCA did not tell."""
        ...

    def record_task_id(self, contact_id: str, task_id: str) -> None:
        """Note the taskId of such a submission (idempotent)."""
        ...


class TaskIdJoin:
    """One pass's join. Without a ledger (``None``) it joins nothing."""

    def __init__(self, ledger: TaskIdLedger | None) -> None:
        self.ledger = ledger
        #: ContactIds whose taskId the ledger lacks (read by ``load``; shrinks as they are learnt).
        self.contacts: set[str] = set()

    async def load(self) -> None:
        """The push ledger's ContactIds whose taskId is unknown (asked once per run)."""
        if self.ledger is None:
            return
        try:
            self.contacts = set(await asyncio.to_thread(self.ledger.contacts_with_unknown_task))
        except QcflowError as exc:
            log.warning(
                "harvest: cannot read the push ledger's unknown taskIds (%s); no join this run",
                exc,
                extra={"event": "harvest_ledger_unavailable"},
            )

    def contact(self, call_id: str | None) -> str | None:
        """``call_id`` if it is a ContactId whose taskId the ledger lacks, else ``None``."""
        return call_id if call_id in self.contacts else None

    async def met_written(self, call_id: str | None, task_id: str) -> None:
        """A result met already written: written before push learnt it lacks the taskId."""
        contact = self.contact(call_id)
        if contact is not None:
            await asyncio.to_thread(self.learn, contact, task_id)

    def committed(self, contacts: Mapping[str, str]) -> None:
        """A part is visible (in the committing thread): ``contacts`` maps its results to ContactIds."""
        for result, contact_id in contacts.items():
            self.learn(contact_id, rec.task_of(result))

    def learn(self, contact_id: str, task_id: str) -> None:
        """Tell the push ledger the taskId of a submission whose taskId SCA did not say."""
        if self.ledger is None:
            return
        try:
            self.ledger.record_task_id(contact_id, task_id)
            self.contacts.discard(contact_id)
        except QcflowError as exc:
            log.warning(
                "harvest: cannot record taskId %s for ContactId %s in the ledger: %s",
                task_id,
                contact_id,
                exc,
                extra={"event": "harvest_ledger_write_failed"},
            )
