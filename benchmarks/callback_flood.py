"""Can a callback flood slow the harvest down? (issue 25)

``python benchmarks/callback_flood.py`` runs three scenarios, each against a sandbox of its own
(in its own process, at the real GetResult quota of 1000 calls / 60 s, 50 ms added to every
answer) and a store of its own, with the real handlers (``functions/harvest``, and four
``functions/callback`` instances loaded as FC loads them, in a process of their own):

1. **baseline**: one harvest pass (a backfill of the preloaded results) alone;
2. **forged**: the same pass while ``--callbacks`` well-signed callbacks *without* the token
   (half with a wrong one, half with none) are spread over its run — they must cost 0
   GetResult calls, and the pass must take as long as alone (``forged_ratio`` ≤ 1.1);
3. **valid**: the same pass while as many callbacks *with* the token, for random taskIds,
   are spread over it — each instance's bucket lets a few through, the rest answer 503, and
   the pass must still end within its budget (the harvest function's timeout) with every
   result written.

The last line: ``forged_ratio=<x> valid_flood_harvest_s=<s> budget_s=<s> callback_get_results=<n>
forged_get_results=<n>`` (GetResult calls the valid / forged callbacks made). The harvest runs at
the default callback share (0.1): its own ceiling is 90 % of the GetResult ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<x>.py` from anywhere
from benchmarks import common  # noqa: E402

QUOTA_CALLS = 1000
QUOTA_WINDOW = 60.0
LATENCY = 0.05
TOKEN = "bench-callback-token-" + "0123456789abcdef" * 2
INSTANCES = 4
SENDERS = 8


def _get_results(url: str) -> tuple[int, int]:
    """(GetResult calls answered, of them throttled) by the sandbox so far."""
    with urlopen(f"{url}/__sandbox/stats", timeout=10) as answer:
        stats = json.load(answer)
    answers = stats.get("answers", {})
    total = sum(n for key, n in answers.items() if key.startswith("GetResult"))
    throttled = sum(n for key, n in answers.items() if key.startswith("GetResult Throttling"))
    return total, throttled


def _environment(url: str, store: Path) -> dict[str, str]:
    from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

    return {
        "QCFLOW_STORE": f"file:{store}",
        "QCFLOW_SCA_ENDPOINT": url,
        "QCFLOW_CCC_ENDPOINT": url,
        "QCFLOW_CALLBACK_TOKEN": TOKEN,
        "QCFLOW_LOG_LEVEL": "ERROR",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
    }


def _callback_event(index: int, valid: bool) -> bytes:
    from qcflow.callback import callback_signature
    from qcflow.tools.fc_local import http_event
    from qcflow.tools.sandbox.options import DEFAULT_ALI_UID

    task_id = f"flood-{uuid.uuid4().hex}"
    stamp = str(int(time.time() * 1000))
    query = {
        "taskId": task_id,
        "timestamp": stamp,
        "aliUid": DEFAULT_ALI_UID,
        "signature": callback_signature(task_id, stamp, DEFAULT_ALI_UID),
        "event": "TaskComplete",
    }
    if valid:
        path = f"/sca-callback/{TOKEN}"
    else:  # the URL did not leak: a guessed token, or none
        path = "/sca-callback/" + uuid.uuid4().hex if index % 2 else "/sca-callback"
    return http_event("GET", path, query)


class Flood:
    """``count`` callbacks spread evenly over ``spread`` seconds, round robin over the callback
    instances, from ``SENDERS`` threads (FC would run them side by side)."""

    def __init__(self, modules: list[Any], count: int, spread: float, *, valid: bool) -> None:
        self.modules, self.count, self.spread, self.valid = modules, count, spread, valid
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="callback-flood", daemon=True)

    def _one(self, index: int) -> None:
        from qcflow.tools.fc_local import FcCredentials, context_for
        from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

        creds = FcCredentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
        module = self.modules[index % len(self.modules)]
        try:
            status = int(
                module.handler(_callback_event(index, self.valid), context_for("callback", creds, timeout=30))[
                    "statusCode"
                ]
            )
        except Exception:  # noqa: BLE001 - counted: the handler must answer, never raise
            status = 0
        with self._lock:
            self.statuses[status] += 1

    def _run(self) -> None:
        started = time.monotonic()
        with ThreadPoolExecutor(SENDERS) as pool:
            for index in range(self.count):
                wait = started + index * self.spread / self.count - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                pool.submit(self._one, index)

    def start(self) -> Flood:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(self.spread + 120)


class FloodProcess:
    """The callback instances and their flood in a process of their own, as FC runs them apart
    from the harvest (in one process they would share its GIL, which no deployment does). It loads
    the instances, says ``ready``, waits for ``go`` on stdin, and prints the answers' statuses."""

    def __init__(self, count: int, spread: float, *, valid: bool) -> None:
        command = [sys.executable, os.path.abspath(__file__), "_flood", str(count), str(spread), str(int(valid))]
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None and self._proc.stdin is not None
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            self._proc.kill()
            raise RuntimeError(f"the flood process did not start: {line!r}")
        self.statuses: dict[int, int] = {}

    def start(self) -> FloodProcess:
        assert self._proc.stdin is not None
        self._proc.stdin.write("go\n")
        self._proc.stdin.flush()
        return self

    def join(self) -> None:
        out, _ = self._proc.communicate(timeout=600)
        self.statuses = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def flood_main(count: int, spread: float, valid: bool) -> None:
    """The child: ``INSTANCES`` callback instances (the environment is the parent's), the flood."""
    from qcflow.tools.fc_local import load_handler_module

    modules = [load_handler_module("callback") for _ in range(INSTANCES)]
    print("ready", flush=True)
    sys.stdin.readline()
    flood = Flood(modules, count, spread, valid=valid).start()
    flood.join()
    for module in modules:
        module.app.close()
    print(json.dumps(flood.statuses), flush=True)


def scenario(kind: str, *, results: int, callbacks: int, spread: float, budget: float, root: Path) -> dict[str, Any]:
    """One harvest pass under ``kind`` ("none", "forged", "valid"): its report and what it cost."""
    from qcflow.tools.fc_local import FcCredentials, context_for, load_handler_module, timer_event
    from qcflow.tools.sandbox.options import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    start, end = now - timedelta(hours=4), now - timedelta(hours=1)
    proc, url = common.start_sandbox(
        "--latency",
        str(LATENCY),
        "--get-result-quota",
        str(QUOTA_CALLS),
        "--quota-window-seconds",
        str(QUOTA_WINDOW),
        "--preload",
        str(results),
        "--preload-start",
        start.isoformat(),
        "--preload-end",
        end.isoformat(),
        stop_after=budget + spread + 300,
    )
    saved = dict(os.environ)
    modules: list[Any] = []
    try:
        os.environ.update(_environment(url, root / f"store-{kind}"))
        harvest = load_handler_module("harvest")
        modules = [harvest]
        flood = FloodProcess(callbacks, spread, valid=kind == "valid") if kind != "none" else None
        creds = FcCredentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
        if flood:
            flood.start()
        began = time.monotonic()
        report = harvest.handler(
            timer_event({"since": start.isoformat(), "until": end.isoformat()}),
            context_for("harvest", creds, timeout=int(budget)),
        )
        seconds = time.monotonic() - began
        if flood:
            flood.join()
        total, throttled = _get_results(url)
        return {
            "kind": kind,
            "seconds": seconds,
            "written": report["written"],
            "calls": report["calls"],
            "stopped_by_deadline": report["stopped_by_deadline"],
            "get_results": total,
            "callback_get_results": total - report["calls"],
            "throttled": throttled,
            "statuses": flood.statuses if flood else {},
        }
    finally:
        for module in modules:
            module.app.close()
        os.environ.clear()
        os.environ.update(saved)
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001
            proc.kill()


def run(results: int, callbacks: int, budget: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qcflow-bench-flood-") as tmp:
        root = Path(tmp)
        base = scenario("none", results=results, callbacks=0, spread=0, budget=budget, root=root)
        spread = base["seconds"]
        forged = scenario("forged", results=results, callbacks=callbacks, spread=spread, budget=budget, root=root)
        valid = scenario("valid", results=results, callbacks=callbacks, spread=spread, budget=budget, root=root)
    return {
        "baseline": base,
        "forged": forged,
        "valid": valid,
        "budget": budget,
        "results": results,
        "forged_ratio": forged["seconds"] / base["seconds"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=int, default=20_000, help="results the harvest pass reads (default 20,000)")
    parser.add_argument("--callbacks", type=int, default=1_000, help="callbacks per flood (default 1,000)")
    parser.add_argument("--budget", type=float, default=60.0, help="the harvest function's timeout, s (default 60)")
    args = parser.parse_args(argv)
    print(
        f"== callback flood: {args.callbacks:,} callbacks over {INSTANCES} callback instances during a harvest "
        f"of {args.results:,} results,\n   GetResult quota {QUOTA_CALLS}/{QUOTA_WINDOW:.0f} s, "
        f"{LATENCY * 1000:.0f} ms latency =="
    )
    out = run(args.results, args.callbacks, args.budget)
    for name in ("baseline", "forged", "valid"):
        s = out[name]
        print(
            f"   {name:8} harvest {s['seconds']:5.1f} s, {s['written']:,} written, {s['calls']} harvest calls, "
            f"{s['callback_get_results']} callback GetResults, {s['throttled']} throttled, "
            f"stopped_by_deadline={s['stopped_by_deadline']}, answers {s['statuses']}"
        )
    print("   goals: forged_ratio <= 1.1 and 0 GetResult for forged callbacks; valid flood: harvest within its budget")
    print(
        f"forged_ratio={out['forged_ratio']:.3f} valid_flood_harvest_s={out['valid']['seconds']:.1f} "
        f"budget_s={out['budget']:.0f} callback_get_results={out['valid']['callback_get_results']} "
        f"forged_get_results={out['forged']['callback_get_results']}"
    )
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_flood":
        flood_main(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1")
    else:
        main(sys.argv[1:])
