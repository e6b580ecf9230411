"""What does redacting personal numbers (issue 24, ``QCFLOW_PII``) cost?

``python benchmarks/pii.py`` measures:

1. **redaction per record**: ``Redactor.record`` on records shaped like real calls (the
   sandbox's content, transcripts of ~80 sentences as a 10-minute call has, a customer
   saying a personal number in half of them), in ``mask`` and ``hash`` mode, against the
   cost of ``to_record`` + ``encode_line`` that every record pays anyway;
2. **harvest efficiency with redaction on** at 100,000 results: ``benchmarks/harvest.py``'s
   machinery (a sandbox at the real GetResult quota in its own process, ``run_harvest`` in a
   child process), with ``QCFLOW_PII=mask`` (the default), and ``off`` for comparison
   (``--no-off`` skips that run);
3. **layer size**: ``scripts/build_layer.py`` into a temp folder (``qcflow.pii`` needs no new
   dependency: the detector is pure Python; ``--no-layer`` skips the build).

The last line: ``redaction_us_per_record=<n> harvest_efficiency_with_pii=<x>`` (plus the
layer's ``unzipped <n> MB`` line before it). Goals: efficiency >= 0.93, layer <= 25 MB.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/<x>.py` from anywhere
from benchmarks import harvest as hb  # noqa: E402

SENTENCES_PER_CALL = 80


def _items(count: int, seed: int = 24) -> list[dict[str, Any]]:
    """GetResult items like the sandbox's, with call-length transcripts."""
    from qcflow.tools.sandbox.content import build_templates

    rng = random.Random(seed)
    templates = build_templates(seed)
    items = []
    for index in range(count):
        base = templates[index % len(templates)]["heavy"]
        sentences: list[dict[str, Any]] = []
        while len(sentences) < SENTENCES_PER_CALL:
            sentences.extend(copy.deepcopy(rng.choice(templates)["heavy"]["AsrResult"]))
        item = copy.deepcopy(base)
        item["AsrResult"] = sentences[:SENTENCES_PER_CALL]
        item.update(
            TaskId=f"t-{index}",
            Status=1,
            CreateTimeLong=1733380000 + index,
            Recording={"Id": f"c-{index}", "Name": f"ccc/{index}.wav", "Caller": f"1380000{index % 10000:04d}",
                       "Callee": "4008001234"},
        )
        items.append(item)
    return items


def redaction_cost(count: int) -> dict[str, float]:
    from qcflow.harvest import records as rec
    from qcflow.pii import Redactor

    zone = ZoneInfo("Asia/Shanghai")
    items = _items(count)
    records = [rec.to_record(item, zone, "2026-12-05T00:00:00+00:00") for item in items]
    started = time.perf_counter()
    for item in items:
        rec.encode_line(rec.to_record(item, zone, "2026-12-05T00:00:00+00:00"))
    baseline = (time.perf_counter() - started) / count * 1e6
    figures = {"convert_us_per_record": baseline}
    for mode in ("mask", "hash"):
        redactor = Redactor(mode, key=b"a-benchmark-key-0123456789")
        copies = copy.deepcopy(records)
        started = time.perf_counter()
        for record in copies:
            redactor.record(record)
        figures[f"{mode}_us_per_record"] = (time.perf_counter() - started) / count * 1e6
    masked = sum(1 for record in copies if any("*" in s["words"] for s in record["asr_result"]))
    figures["records_with_a_number"] = masked
    chars = sum(len(s["words"]) for s in records[0]["asr_result"])
    print(f"   {count} records of {SENTENCES_PER_CALL} sentences (~{chars} characters of transcript), {masked} with a "
          f"personal number: to_record + encode_line {baseline:.0f} µs, redaction mask "
          f"{figures['mask_us_per_record']:.0f} µs, hash {figures['hash_us_per_record']:.0f} µs per record")
    return figures


def harvest_efficiency(records: int, mode: str) -> float:
    """``benchmarks/harvest.py``'s big run with ``QCFLOW_PII=<mode>`` in the child."""
    os.environ["QCFLOW_BENCH_PII"] = mode
    with tempfile.TemporaryDirectory(prefix="qcflow-bench-pii-") as tmp:
        with hb.sandbox(*hb.preloaded(records, hb.DAY_END)) as url:
            result = hb.harvest_in_child(url, Path(tmp) / "store", hb.DAY_END, reader_only=False)
        lines, distinct = hb.count_results(Path(tmp) / "store")
    efficiency = hb.efficiency(result["records"], result["seconds"])
    print(f"   harvest, QCFLOW_PII={mode}: {result['records']:,} results in {result['seconds']:.1f} s "
          f"({lines:,} lines / {distinct:,} distinct), efficiency {efficiency:.3f}, peak RSS {result['peak_rss_mb']:.0f} MB")
    return efficiency


def layer_size() -> float | None:
    with tempfile.TemporaryDirectory(prefix="qcflow-bench-layer-") as tmp:
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_layer.py"), "--out", tmp],
                              capture_output=True, text=True, timeout=900)
    found = re.search(r"unzipped ([0-9.]+) MB", done.stdout)
    if done.returncode != 0 or not found:
        print(f"   layer: not built ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")
        return None
    print(f"   layer: unzipped {found.group(1)} MB (qcflow.pii adds no dependency)")
    return float(found.group(1))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="results in the harvest run (default 100,000)")
    parser.add_argument("--sample", type=int, default=2_000, help="records timed for the per-record cost")
    parser.add_argument("--no-off", action="store_true", help="skip the harvest with QCFLOW_PII=off")
    parser.add_argument("--no-layer", action="store_true", help="skip the layer build")
    args = parser.parse_args(argv)
    print("== redaction of personal numbers (QCFLOW_PII) ==")
    cost = redaction_cost(args.sample)
    with_pii = harvest_efficiency(args.records, "mask")
    if not args.no_off:
        without = harvest_efficiency(args.records, "off")
        print(f"   efficiency off → mask: {without:.3f} → {with_pii:.3f}")
    if not args.no_layer:
        layer_size()
    print("   goals: harvest efficiency with redaction >= 0.93, layer <= 25 MB")
    print(f"redaction_us_per_record={cost['mask_us_per_record']:.0f} harvest_efficiency_with_pii={with_pii:.3f}")
    return {"redaction_us_per_record": cost["mask_us_per_record"], "harvest_efficiency_with_pii": with_pii}


if __name__ == "__main__":
    main()
