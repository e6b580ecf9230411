"""How ``qcflow push`` and ``qcflow replay`` end: signals, claims left behind, one summary, an exit code.

An operator's run is not the push function: when it stops — Ctrl-C (SIGINT), SIGTERM, a fault
that outlasted its retries — its rerun must not be told ``busy … claimed by another invocation``
about claims of a process that is gone. So the run passes ``release_unsent=True`` (claims it
created and never sent under are released: ``Ledger.release``), and its summary says what is
still held (an ``UploadAudioData`` that may have reached SCA keeps its claim), until when, and
the command to run then.

A ``DeploymentError`` (a wrong AccessKey or secret, a RAM policy without the action) stops the run
at the first: one line naming what to fix, nothing recorded as failed.

Exit codes (documented for scripts and cron):

==== =========================================================================
0    every recording settled: submitted, already submitted, or ignored
1    some failed (``qcflow replay`` after fixing the cause) or are not settled
     (retry, busy: rerun later); also an unexpected error of the store or a service
2    usage or configuration (a bad option, a missing or invalid ``QCFLOW_*`` setting)
3    deployment: credentials, signature, clock or RAM permissions (``remedy`` says which)
130  interrupted by SIGINT (Ctrl-C); 143: terminated by SIGTERM
==== =========================================================================
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import Any

from qcflow.errors import ConfigError, DeploymentError, QcflowError
from qcflow.push.held import HeldClaims
from qcflow.push.results import PushResult

EXIT_OK = 0
EXIT_UNSETTLED = 1
EXIT_USAGE = 2
EXIT_DEPLOYMENT = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
_SIGNAL_EXIT = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}

#: Statuses that leave a recording not pushed: the run exits 1.
_NOT_OK = ("failed", "already_failed", "retry", "busy")


def deployment_line(exc: DeploymentError) -> str:
    """One line for a deployment error: who refused what, and what to fix (not the server's
    string to sign: it only helps Alibaba Cloud's support, and the RequestId is there for them)."""
    head = " ".join(part for part in (exc.action, exc.code) if part) or "the service"
    first = exc.message.split(". ", 1)[0].split(":", 1)[0].strip().rstrip(".")
    request = f" [RequestId {exc.request_id}]" if exc.request_id else ""
    return f"deployment error: {head} refused the caller ({first}){request}. Fix: {exc.remedy}"


def rerun_command(argv: list[str] | None = None) -> str:
    """This very command, for the summary to quote."""
    args = sys.argv[1:] if argv is None else argv
    return "qcflow " + shlex.join(args)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class OperatorRun:
    """One ``qcflow push`` or ``qcflow replay``: its token, the claims it holds, what happened."""

    def __init__(
        self,
        command: str,
        *,
        say: Callable[[str], None],
        error: Callable[[str], None],
        table: Callable[[str, dict[str, int]], None] | None = None,
    ) -> None:
        """``say``: the summary's lines; ``error``: one line on stderr; ``table``: shows the counts
        per outcome (else a line says them)."""
        self.command = command
        self.table = table
        self.token = f"{'cli' if command == 'push' else command}-{uuid.uuid4().hex}"
        self.held = HeldClaims()
        self.results: list[PushResult] = []
        self.counts: Counter[str] = Counter()
        self.say = say
        self.error = error
        self.signal: signal.Signals | None = None

    def note(self, result: PushResult) -> None:
        """Every settled (or finally unsettled) result of the run: pass it as ``on_result``."""
        self.results.append(result)
        self.counts[result.status] += 1

    # ------------------------------------------------------------------ running

    def execute(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> int:
        """Run ``work`` under SIGINT/SIGTERM handling; the exit code (the summary is said)."""
        try:
            asyncio.run(self._supervised(work))
        except DeploymentError as exc:
            self.error(deployment_line(exc))
            return EXIT_DEPLOYMENT
        except ConfigError as exc:
            self.error(f"error: {exc}")
            return EXIT_USAGE
        except QcflowError as exc:
            self.error(f"error: {exc}")
            self.summary()
            return EXIT_UNSETTLED
        if self.signal is not None:
            self.summary()
            return _SIGNAL_EXIT[self.signal]
        return self.summary()

    async def _supervised(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """``work`` as a task that SIGINT/SIGTERM cancel: the pusher then releases what it never sent."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(work())

        def stop(signum: signal.Signals) -> None:
            if self.signal is None:
                self.signal = signum
                self.error(
                    f"{signum.name}: stopping; releasing the claims of recordings not sent yet "
                    "(again to quit at once: they then stay until they expire)"
                )
                task.cancel()
            else:  # the operator insists: quit now, claims not yet released stay until they expire
                self.error(f"{signum.name} again: quitting at once")
                os._exit(_SIGNAL_EXIT[signum])

        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):  # not the main thread, or no such support
                pass
        try:
            await task
        except asyncio.CancelledError:
            if self.signal is None:
                raise
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    # ------------------------------------------------------------------ the summary

    def summary(self) -> int:
        """Say what happened, what is still held and until when, what to run next; the exit code."""
        counts = dict(sorted(self.counts.items()))
        interrupted = f", interrupted by {self.signal.name}" if self.signal else ""
        if self.table is not None:
            self.table(self.command, counts)
            if interrupted:
                self.say(f"{self.command}: stopped{interrupted}")
        else:
            done = ", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing done"
            self.say(f"{self.command}: {done}{interrupted}")
        rerun = rerun_command()
        released = self.held.count_released()
        if released:
            self.say(f"released {released} claim(s) of recordings this run never sent: `{rerun}` may push them now")
        held = self.held.still_held()
        if held:
            until = max(c.expires_at for c in held)
            self.say(
                f"still held: {len(held)} claim(s) of this run until {_when(until)} (an UploadAudioData may have "
                f"reached SCA; the rerun looks there first): run `{rerun}` after {_when(until)}"
            )
            for claim in held[:5]:
                where = claim.key or claim.location
                self.say(f"  {where}  ContactId {claim.contact_id}  until {_when(claim.expires_at)}")
        busy = [r.held_until for r in self.results if r.status == "busy" and r.held_until is not None]
        if busy:
            self.say(
                f"busy: {len(busy)} recording(s) claimed by another invocation until {_when(max(busy))}: "
                f"it settles them; if it is gone, run `{rerun}` after that"
            )
        failed = self.counts["failed"] + self.counts["already_failed"]
        if failed:
            self.say(
                f"failed: {failed} recording(s): fix the cause (`qcflow replay --dry-run` shows each reason), "
                "then `qcflow replay`"
            )
        retry = [r for r in self.results if r.status == "retry"]
        if retry and not held and not self.signal:
            first = retry[0].message or retry[0].code
            self.say(f"not settled: {len(retry)} (first: {first}); run `{rerun}` again later")
        return EXIT_UNSETTLED if any(self.counts[s] for s in _NOT_OK) or held else EXIT_OK
