"""The chaos suite's seeds and its report (printed in pytest's terminal summary).

``QCFLOW_CHAOS_SEED`` (default 1) is the first seed, ``QCFLOW_CHAOS_SEEDS`` (default 20) how
many consecutive seeds run. A failing seed prints the command that replays it.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import pytest


def chaos_seeds() -> list[int]:
    first = int(os.environ.get("QCFLOW_CHAOS_SEED", "1"))
    count = int(os.environ.get("QCFLOW_CHAOS_SEEDS", "20"))
    return list(range(first, first + max(0, count)))


@dataclass
class ChaosReport:
    """Totals over the schedules run in this session."""

    schedules: int = 0
    passed: int = 0
    seeds: list[int] = field(default_factory=list)
    recordings: int = 0
    seconds: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    stats: Counter[str] = field(default_factory=Counter)

    def add(self, seed: int, recordings: int, seconds: float, faults: Counter[str], stats: Counter[str], ok: bool) -> None:
        self.schedules += 1
        self.passed += int(ok)
        self.seeds.append(seed)
        self.recordings += recordings
        self.seconds += seconds
        self.faults.update(faults)
        self.stats.update(stats)

    def lines(self) -> list[str]:
        s = self.stats
        reached = {k.split(".")[1]: v for k, v in s.items() if k.startswith("crash.") and k.endswith(".reached")}
        missed = {k.split(".")[1]: v for k, v in s.items() if k.startswith("crash.") and k.endswith(".missed")}
        seeds = _ranges(sorted(self.seeds))
        return [
            f"schedules: {self.schedules} (seeds {seeds}), passed {self.passed}, {self.recordings} recordings, "
            f"{self.seconds:.1f} s",
            "injected faults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())),
            f"crashes (SIGKILL): {sum(reached.values())} — " + ", ".join(f"{k} {v}" for k, v in sorted(reached.items()))
            + (f"; point not reached: {dict(sorted(missed.items()))}" if missed else ""),
            f"push: {s['push.invocations']} invocations ({s['duplicate_events']} duplicate/late events, "
            f"{s['push.fc_retries']} FC retries, {s['push.raised']} raised for a retry, {s['push.fc_gave_up']} given up by FC, "
            f"{s['push.drain']} FC retries after the storm, {s['push.replayed']} re-pushed by `qcflow replay` an hour later, "
            f"{s['cold_starts']} cold starts); submitted {s['push.submitted']}, "
            f"already_submitted {s['push.already_submitted']}, failed {s['push.failed']}, "
            f"already_failed {s['push.already_failed']}, ignored {s['push.ignored']}",
            f"harvest: {s['harvest.invocations']} timer invocations ({s['harvest.overlapping_sets']} overlapping sets, "
            f"{s['harvest.lease_busy']} lease busy), {s['harvest.written']} written, "
            f"{s['harvest.duplicates_skipped']} duplicates skipped, {s['harvest.recovered']} parts recovered",
            f"callbacks: {s['callbacks.delivered']} handled ({s['callbacks.duplicated']} duplicated, "
            f"{s['callbacks.forged']} forged hints, {s['callbacks.junk']} junk), answers "
            + ", ".join(f"{k[len('callbacks.http_'):]}: {v}" for k, v in sorted(s.items()) if k.startswith("callbacks.http_")),
        ] + ["time by step: " + ", ".join(f"{k[8:]} {v:.1f}s" for k, v in sorted(s.items()) if k.startswith("seconds."))]


def _ranges(numbers: list[int]) -> str:
    """``1..20, 101..102``"""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in spans) or "-"


REPORT = ChaosReport()


@pytest.fixture
def chaos_report() -> ChaosReport:
    return REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.schedules:
        return
    terminalreporter.section("chaos report")
    for line in REPORT.lines():
        terminalreporter.line(line)
