"""A local stand-in for CCC and SCA that the official SDKs accept (``qcflow sandbox serve``).

Optional extra (``qcflow[sandbox]``): never part of the Function Compute layer.
"""

from qcflow.tools.sandbox.options import FaultOptions, QuotaOptions, SandboxOptions

__all__ = ["FaultOptions", "QuotaOptions", "SandboxOptions"]
