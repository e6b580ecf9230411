"""A scan of every log line the test suite captures: no access key secret, STS token or URL
signature may appear in any of them (``qcflow.logs`` masks them; this proves it held), and no
personal number the sandbox's customers say (issue 24: ``content.PERSONAL_CANARIES``, which
the harvest redacts before anything is written or logged).

Registered in ``tests/conftest.py``. It reads the captured stdout, stderr and log sections
of every test report (pytest records them for passing tests too) and fails the session,
naming the test and the line, if one leaks. Output a test consumed itself with
``capsys.readouterr()`` is checked by that test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from qcflow.tools.sandbox.content import PERSONAL_CANARIES

#: Secrets the suite hands to qcflow (sandbox, moto, FC contexts, demo): none may be printed.
KNOWN_SECRETS = (
    "qcflow-sandbox-secret",
    "sts-token-of-the-role",
    "test-sts-token",
    "demo-sts-token",
    "test-secret",
)
#: A signature or credential parameter whose value is not the mask.
UNMASKED_PARAMETER = re.compile(
    r"(?i)\b(signature|ossaccesskeyid|x-oss-signature|x-oss-credential|x-oss-security-token|securitytoken|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|access_key_secret|accesskeysecret)"
    r"(=|%3D|\":\s*\")(?!\*\*\*)([^&\s\"',;]{6,})"
)

#: A callback token (the last path segment of callbackUrl, issue 25) that is not the mask.
UNMASKED_CALLBACK_TOKEN = re.compile(r"/sca-callback/(?!\*\*\*)([A-Za-z0-9_-]{22,})")


@dataclass
class LeakScan:
    lines_scanned: int = 0
    leaks: list[str] = field(default_factory=list)

    def scan(self, where: str, text: str) -> None:
        for line in text.splitlines():
            self.lines_scanned += 1
            found = [s for s in KNOWN_SECRETS if s in line]
            found += [f"personal number {p[:3]}…" for p in PERSONAL_CANARIES if p in line]
            match = UNMASKED_PARAMETER.search(line)
            if match:
                found.append(f"{match.group(1)}={match.group(3)[:6]}…")
            token = UNMASKED_CALLBACK_TOKEN.search(line)
            if token:
                found.append(f"/sca-callback/{token.group(1)[:6]}…")
            if found:
                self.leaks.append(f"{where}: {', '.join(found)} in {line[:200]!r}")


SCAN = LeakScan()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, content in report.sections:
        if name.startswith("Captured"):
            SCAN.scan(f"{report.nodeid} ({name})", content)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SCAN.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCAN.leaks:
        terminalreporter.section("secrets in captured output", red=True)
        for leak in SCAN.leaks[:50]:
            terminalreporter.line(leak)
        terminalreporter.line(f"{len(SCAN.leaks)} leaking line(s): the suite fails")
    else:
        terminalreporter.line(f"leak scan: {SCAN.lines_scanned} captured lines, no secret, token or URL signature")
