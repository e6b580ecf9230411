"""Personal data out of the harvested rows: ``detect`` finds personal numbers in Chinese ASR
text, ``redact`` applies ``QCFLOW_PII`` to a record."""

from qcflow.pii.detect import Detector, Span, mask
from qcflow.pii.redact import Redactor

__all__ = ["Detector", "Redactor", "Span", "mask"]
