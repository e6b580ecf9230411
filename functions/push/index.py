"""FC handler: OSS trigger (a recording was uploaded) → the push use case.

Everything but the translation of FC's event and context lives in the ``qcflow`` layer.
"""

from typing import Any

import qcflow.push  # noqa: F401  (the use case loads with the instance, not in its first event)
from qcflow.fc import FunctionApp
from qcflow.services import build_services
from qcflow.triggers import push_oss_event

app = FunctionApp(build_services)  # clients built once per instance, reused by warm invocations


def initialize(context: Any) -> None:
    """FC initializer (optional): build clients before the first event arrives."""
    app.invoke(context, _noop)


async def _noop(services: Any, invocation: Any) -> None:
    return None


def handler(event: Any, context: Any) -> Any:
    return app.invoke(
        context,
        lambda services, invocation: push_oss_event(
            event, services.pusher, token=f"fc-{invocation.request_id}", deadline=invocation.deadline
        ),
    )
