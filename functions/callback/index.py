"""FC handler: HTTP trigger (SCA's task-complete callback) → fetch that task, write it once.

The callback is only a hint (its signature uses no secret); the data comes from GetResult.
"""

from typing import Any

from qcflow.fc import FunctionApp
from qcflow.services import build_services
from qcflow.triggers import sca_callback

app = FunctionApp(build_services)  # clients built once per instance, reused by warm invocations


def handler(event: Any, context: Any) -> Any:
    return app.invoke(context, lambda services, invocation: sca_callback(event, services, deadline=invocation.deadline))
