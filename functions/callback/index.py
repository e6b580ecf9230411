"""FC handler: HTTP trigger (SCA's task-complete callback) → fetch that task, write it once.

Only a request whose path ends in the callback token gets past the edge; the callback is a
hint (its signature uses no secret) and the data comes from GetResult
(``qcflow.callback_handler``).
"""

from typing import Any

from qcflow.callback_handler import CallbackEdge
from qcflow.fc import FunctionApp
from qcflow.services import build_services

app = FunctionApp(build_services)  # clients built once per instance, reused by warm invocations
edge = CallbackEdge()  # this instance's GetResult bucket, shared by its invocations


def handler(event: Any, context: Any) -> Any:
    return edge.serve(app, event, context)
