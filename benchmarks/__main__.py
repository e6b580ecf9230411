"""``python -m benchmarks`` (``make bench``): run every benchmark, write ``benchmarks/RESULTS.md``.

Each benchmark runs in its own process (its figures are not disturbed by the others'
imports or threads) and ends with a ``key=value …`` line; this runner reads those figures,
compares each with its goal, writes the table to ``benchmarks/RESULTS.md`` and copies it into
the README between the ``bench:start``/``bench:end`` markers. ``--only NAME`` runs a subset.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
README = ROOT / "README.md"


@dataclass(frozen=True)
class Goal:
    figure: str
    label: str
    goal: str
    met: Callable[[dict[str, float]], bool]
    show: Callable[[dict[str, float]], str]


@dataclass(frozen=True)
class Bench:
    name: str
    command: list[str]
    goals: tuple[Goal, ...]
    timeout: float = 900


def _kv(text: str) -> dict[str, float]:
    """Every ``key=number`` of the output (later ones win), plus the harvest memory line."""
    values: dict[str, float] = {}
    for key, number in re.findall(r"([a-z_0-9]+)=(-?[0-9.]+)", text):
        try:
            values[key] = float(number)
        except ValueError:
            continue
    memory = re.search(r"peak RSS ([0-9.]+) MB at ([0-9,]+) vs ([0-9.]+) MB at ([0-9,]+)", text)
    if memory:
        values["rss_small_mb"], values["rss_big_mb"] = float(memory.group(1)), float(memory.group(3))
    layer = re.search(r"unzipped ([0-9.]+) MB", text)
    if layer:
        values["layer_unzipped_mb"] = float(layer.group(1))
    return values


PY = sys.executable
BENCHES = (
    Bench("harvest", [PY, "benchmarks/harvest.py"], (
        Goal("harvest_efficiency", "harvest efficiency (records/s ÷ quota calls/s × 99)", "≥ 0.93",
             lambda v: v["harvest_efficiency"] >= 0.93, lambda v: f"{v['harvest_efficiency']:.3f}"),
        Goal("speedup_vs_naive", "speed-up against sequential pages of 10", "≥ 8",
             lambda v: v["speedup_vs_naive"] >= 8, lambda v: f"{v['speedup_vs_naive']:.1f}×"),
        Goal("peak_rss_mb", "harvest peak RSS at 100k results", "< 150 MB",
             lambda v: v["peak_rss_mb"] < 150, lambda v: f"{v['peak_rss_mb']:.0f} MB"),
        Goal("rss_big_mb", "memory flat from 10k to 100k (peak RSS ratio)", "≤ 1.25×",
             lambda v: v["rss_big_mb"] <= 1.25 * v["rss_small_mb"],
             lambda v: f"{v['rss_small_mb']:.0f} → {v['rss_big_mb']:.0f} MB ({v['rss_big_mb'] / v['rss_small_mb']:.2f}×)"),
        Goal("freshness_p95_s", "freshness p95 (callback path)", "< 10 s",
             lambda v: v["freshness_p95_s"] < 10, lambda v: f"{v['freshness_p95_s']:.2f} s"),
    ), timeout=1200),
    Bench("callback_flood", [PY, "benchmarks/callback_flood.py"], (
        Goal("forged_ratio", "harvest under 1,000 forged callbacks (time ÷ alone)", "≤ 1.1, 0 GetResult",
             lambda v: v["forged_ratio"] <= 1.1 and v["forged_get_results"] == 0,
             lambda v: f"{v['forged_ratio']:.3f} ({v['forged_get_results']:.0f} GetResult)"),
        Goal("valid_flood_harvest_s", "harvest under 1,000 callbacks with the token (time ÷ its budget)", "≤ 1",
             lambda v: v["valid_flood_harvest_s"] <= v["budget_s"],
             lambda v: f"{v['valid_flood_harvest_s']:.1f} s of {v['budget_s']:.0f} s "
                       f"({v['callback_get_results']:.0f} callback GetResults)"),
    ), timeout=600),
    Bench("reviews", [PY, "benchmarks/reviews.py"], (
        Goal("joint_efficiency", "results + reviews backlog: joint efficiency (records read ÷ quota × 99)", "≥ 0.93",
             lambda v: v["joint_efficiency"] >= 0.93, lambda v: f"{v['joint_efficiency']:.3f}"),
        Goal("review_freshness_p95_s", "review freshness p95 (saved → line in reviews/)", "≤ timer period + settle",
             lambda v: v["review_freshness_p95_s"] <= v["timer_period_s"] + v["settle_s"],
             lambda v: f"{v['review_freshness_p95_s']:.1f} s (period {v['timer_period_s']:.0f} s + settle {v['settle_s']:.0f} s)"),
    ), timeout=1200),
    Bench("pii", [PY, "benchmarks/pii.py", "--no-layer"], (
        Goal("harvest_efficiency_with_pii", "harvest efficiency with redaction on (QCFLOW_PII=mask), 100k results",
             "≥ 0.93", lambda v: v["harvest_efficiency_with_pii"] >= 0.93,
             lambda v: f"{v['harvest_efficiency_with_pii']:.3f}"),
        Goal("redaction_us_per_record", "redaction per record (80-sentence transcript)", "< 1,000 µs",
             lambda v: v["redaction_us_per_record"] < 1000, lambda v: f"{v['redaction_us_per_record']:.0f} µs"),
    ), timeout=900),
    Bench("push", [PY, "benchmarks/push.py"], (
        Goal("push_time_ratio", "push burst: 3,000 recordings, 32 instances (time ÷ 60 s)", "≤ 1.15",
             lambda v: v["push_time_ratio"] <= 1.15, lambda v: f"{v['push_time_ratio']:.3f}"),
        Goal("duplicates", "push burst: duplicates / missing", "0 / 0",
             lambda v: v["duplicates"] == 0 and v["missing"] == 0,
             lambda v: f"{v['duplicates']:.0f} / {v['missing']:.0f} (tasks {v['tasks']:.0f}, throttled {v['throttled']:.0f})"),
        Goal("push_2x_quota_ratio", "push at twice the quota: time ÷ (first quota's time + 60 s)", "≤ 1.15",
             lambda v: v["push_2x_quota_ratio"] <= 1.15,
             lambda v: f"{v['push_2x_quota_ratio']:.3f} (throttled {v['push_2x_throttled']:.0f}, duplicates "
                       f"{v['push_2x_duplicates']:.0f}, missing {v['push_2x_missing']:.0f})"),
    )),
    Bench("importtime", [PY, "benchmarks/importtime.py"], (
        Goal("push_cold_start_ms", "push handler cold start (import + oss:// store)", "< 300 ms",
             lambda v: v["push_cold_start_ms"] < 300, lambda v: f"{v['push_cold_start_ms']:.0f} ms"),
        Goal("ratio", "… against the same on the official SDKs", "≤ 0.65×",
             lambda v: v["ratio"] <= 0.65,
             lambda v: f"{v['ratio']:.2f}× ({v['official_sdk_cold_start_ms']:.0f} ms)"),
    )),
    Bench("layer", [PY, "scripts/build_layer.py"], (
        Goal("layer_unzipped_mb", "layer size, unzipped", "≤ 25 MB",
             lambda v: v["layer_unzipped_mb"] <= 25, lambda v: f"{v['layer_unzipped_mb']:.1f} MB"),
    )),
    Bench("report", [PY, "benchmarks/report.py"], (
        Goal("report_seconds", "report of 100,000 results", "< 10 s",
             lambda v: v["report_seconds"] < 10,
             lambda v: f"{v['report_seconds']:.1f} s (peak RSS {v.get('peak_rss_mb', float('nan')):.0f} MB)"),
    )),
    Bench("compaction", [PY, "benchmarks/compaction.py"], (
        Goal("files_per_closed_hour", "files per closed hour after compaction (100,000 callbacks in a day)", "≤ 2",
             lambda v: v["files_per_closed_hour"] <= 2, lambda v: f"{v['files_per_closed_hour']:.0f}"),
        Goal("compact_peak_rss_mb", "peak RSS compacting a 50,000-result hour", "< 150 MB",
             lambda v: v["compact_peak_rss_mb"] < 150, lambda v: f"{v['compact_peak_rss_mb']:.0f} MB"),
        Goal("report_speedup", "qcflow report over that day, before ÷ after compaction", "> 1",
             lambda v: v["report_speedup"] > 1, lambda v: f"{v['report_speedup']:.1f}×"),
    ), timeout=1800),
    Bench("sandbox", [PY, "benchmarks/sandbox_throughput.py"], ()),
)


#: The README's "Latest figures" table sits between these markers (tests/test_docs.py checks they are there).
FIGURES = re.compile(r"(<!-- bench:start -->\n).*?(\n<!-- bench:end -->)", re.S)


def with_figures(readme: str, table_text: str, when: str) -> str:
    """The README with its figures replaced; a README without the markers is an error, not a silent no-op."""
    if not FIGURES.search(readme):
        raise SystemExit(f"{README.name} has no bench:start/bench:end markers: the figures were not copied there")
    return FIGURES.sub(lambda m: m.group(1) + f"Latest `make bench` ({when}):\n\n" + table_text + m.group(2), readme)


def run(bench: Bench) -> tuple[dict[str, float], str]:
    script = ROOT / bench.command[1]
    if not script.exists():
        return {}, f"{bench.command[1]} does not exist"
    started = time.monotonic()
    try:
        done = subprocess.run(bench.command, cwd=ROOT, capture_output=True, text=True, timeout=bench.timeout)
    except subprocess.TimeoutExpired:
        return {}, f"timed out after {bench.timeout:.0f} s"
    print(done.stdout, end="")
    if done.returncode != 0:
        return {}, f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    print(f"   ({bench.name}: {time.monotonic() - started:.0f} s)")
    return _kv(done.stdout), ""


def previous_rows() -> dict[str, tuple[str, str, str, str]]:
    """The rows of the last RESULTS.md, by figure."""
    if not RESULTS.exists():
        return {}
    found = {}
    for line in RESULTS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("figure", "---"):
            found[cells[0]] = (cells[0], cells[1], cells[2], cells[3])
    return found


def table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| figure | goal | measured | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, str, str]] = []
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        print(f"== {bench.name} ==", flush=True)
        values, problem = run(bench)
        for goal in bench.goals:
            try:
                rows.append((goal.label, goal.goal, goal.show(values), "met" if goal.met(values) else "**missed**"))
            except (KeyError, ZeroDivisionError):
                rows.append((goal.label, goal.goal, problem or "not reported", "**not measured**"))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.only:  # keep the figures of the benchmarks not run this time
        fresh = {row[0]: row for row in rows}
        order = [goal.label for bench in BENCHES for goal in bench.goals]
        rows = [fresh.get(label) or previous_rows().get(label) for label in order]  # type: ignore[misc]
        rows = [row for row in rows if row is not None]
    text = table(rows)
    RESULTS.write_text(
        f"# Benchmark results\n\n`make bench` on {platform.machine()} with {platform.python_implementation()} "
        f"{platform.python_version()}, {when}. Each figure against its goal; the sandbox runs in its own process "
        "on the same 2-core machine, at the real quotas where a figure is about the quota.\n\n" + text + "\n",
        encoding="utf-8",
    )
    readme = README.read_text(encoding="utf-8")
    README.write_text(with_figures(readme, text, when), encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
