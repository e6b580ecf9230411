"""A child process that runs one real invocation and kills itself at a chosen point.

Run by the chaos tests as ``python -m tests.chaos.child SPEC.json`` with the world's
``QCFLOW_*`` and ``ALIBABA_CLOUD_*`` variables in its environment. SPEC says what to run:

- ``{"kind": "push", "keys": [...], "bucket": ..., "request_id": ..., "timeout": s}`` — the
  real ``functions/push/index.py`` handler, as an FC instance would run it; with
  ``"clock_shift": -s`` the push use case (``push_oss_event``) with a ``Pusher`` whose wall
  clock runs ``s`` seconds behind: the claim it leaves has expired by the time the process is
  dead (what waiting out ``QCFLOW_PUSH_CLAIM_TTL_SECONDS`` would do, without the wait);
- ``{"kind": "harvest", "payload": {...}, "timeout": s}`` — the real timer handler;
- ``{"kind": "callback", "task_id": ..., "timeout": s}`` — the real callback handler, given a
  well-signed callback for that task.

and ``"point"`` where to die (``tests.chaos.crashing.POINTS``; null: never) and ``"note"`` the
file the dying process describes itself in. The only change to the process is I/O: the API
clients get a ``CrashingTransport`` and the services a ``CrashingStore`` (``module.app`` is
replaced by a ``FunctionApp`` building them); no qcflow function is patched.

The last line of stdout is ``{"child_result": …}`` when the process was not killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from typing import Any

from qcflow.callback import callback_signature
from qcflow.credentials import credentials_from_env
from qcflow.errors import QcflowError
from qcflow.fc import FunctionApp
from qcflow.tools.fc_local import FcCredentials, context_for, http_event, load_handler_module, oss_event, timer_event
from qcflow.push import Pusher
from qcflow.triggers import push_oss_event
from qcflow.tools.sandbox.options import DEFAULT_ALI_UID
from qcflow.services import Services, build_services
from tests.chaos.crashing import CrashingStore, CrashingTransport, Killer


def _fc_credentials() -> FcCredentials:
    return FcCredentials(os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"], os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
                         os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN"))


def _builder(killer: Killer) -> Any:
    async def build(credentials: Any) -> Services:
        services = await build_services(credentials, transport=CrashingTransport(killer))
        services.store = CrashingStore(services.store, killer)
        return services

    return build


def _instance(function: str, killer: Killer) -> Any:
    module = load_handler_module(function)
    module.app = FunctionApp(_builder(killer))  # the handler's own code runs; only its I/O is wrapped
    return module


def run(spec: dict[str, Any]) -> Any:
    killer = Killer(spec.get("point"), spec.get("note"))
    timeout = int(spec.get("timeout", 15))
    kind = spec["kind"]
    if kind == "push" and spec.get("clock_shift"):
        return asyncio.run(_push_shifted(spec, killer, timeout))
    function = {"push": "push", "harvest": "harvest", "callback": "callback"}[kind]
    module = _instance(function, killer)
    context = context_for(function, _fc_credentials(), timeout=timeout, request_id=spec.get("request_id"))
    try:
        if kind == "push":
            return module.handler(oss_event(spec["bucket"], *spec["keys"]), context)
        if kind == "harvest":
            return module.handler(timer_event(spec.get("payload")), context)
        task_id = spec["task_id"]
        stamp = str(int(time.time() * 1000))
        query = {"taskId": task_id, "timestamp": stamp, "aliUid": DEFAULT_ALI_UID,
                 "signature": callback_signature(task_id, stamp, DEFAULT_ALI_UID), "event": "TaskComplete"}
        path = f"/sca-callback/{os.environ['QCFLOW_CALLBACK_TOKEN']}"  # the token push put in callbackUrl
        return module.handler(http_event("GET", path, query), context)
    finally:
        module.app.close()


async def _push_shifted(spec: dict[str, Any], killer: Killer, timeout: int) -> Any:
    shift = float(spec["clock_shift"])
    services = await _builder(killer)(credentials_from_env)
    try:
        base = services.pusher(spec["bucket"])
        pusher = Pusher(services.settings.push, zone=services.settings.zone, ccc=services.ccc, sca=services.sca, store=services.store,
                        recordings=base.recordings, clock=lambda: time.time() + shift, callback_token=os.environ.get("QCFLOW_CALLBACK_TOKEN"))
        deadline = time.monotonic() + timeout - min(5.0, timeout * 0.1)
        return await push_oss_event(oss_event(spec["bucket"], *spec["keys"]), lambda bucket: pusher,
                                    token=f"fc-{spec['request_id']}", deadline=deadline)
    finally:
        await services.aclose()


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    try:
        result = run(spec)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which judges it
        print(json.dumps({"child_result": None, "error": type(exc).__name__, "qcflow_error": isinstance(exc, QcflowError),
                          "message": str(exc)[:500],
                          "trace": traceback.format_exc()[-2000:]}), flush=True)
        return 3
    print(json.dumps({"child_result": result}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
