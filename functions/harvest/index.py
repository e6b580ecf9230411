"""FC handler: timer trigger → one harvest pass (SCA GetResult → JSONL in the store).

Everything but the translation of FC's event and context lives in the ``qcflow`` layer.
"""

from typing import Any

from qcflow.fc import FunctionApp
from qcflow.services import build_services
from qcflow.triggers import harvest_timer

app = FunctionApp(build_services)  # clients built once per instance, reused by warm invocations


def handler(event: Any, context: Any) -> Any:
    return app.invoke(
        context, lambda services, invocation: harvest_timer(event, services, deadline=invocation.deadline)
    )
