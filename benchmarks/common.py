"""What the benchmarks share: a sandbox in its own process, and a process's peak RSS."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path


def start_sandbox(*args: str, stop_after: float) -> tuple[subprocess.Popen[str], str]:
    """``qcflow sandbox serve`` on a free loopback port in its own process (it stops by itself
    after ``stop_after`` seconds); returns the process and its URL."""
    exe = os.path.join(os.path.dirname(sys.executable), "qcflow")
    proc = subprocess.Popen(
        [exe, "sandbox", "serve", "--port", "0", "--stop-after", str(stop_after), *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://[\d.]+:\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    return proc, match.group(1)


def peak_rss_kib() -> int:
    """This process's peak RSS: ``VmHWM`` on Linux, because ``ru_maxrss`` survives ``exec`` and
    would report the parent's peak for a child that never used that much."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
