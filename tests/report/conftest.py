"""Fixtures for the report suite: a harvested demo run, hand-made stores, headless Chromium.

The demo store is made once per session by ``qcflow.tools.demo.run_demo`` (sandbox, push and
harvest through the real handlers): the report reads what the pipeline really writes.
Chromium is Debian's package (``make test`` installs it); without it the browser tests are
skipped with the reason, everything else still runs.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qcflow.store import LocalStore, ObjectStore

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")

pytest.importorskip("duckdb", reason="the report extra (duckdb) is not installed")
pytest.importorskip("plotly", reason="the report extra (plotly) is not installed")


def part_keys(store: ObjectStore) -> list[str]:
    """Every JSONL part the report reads: results/ and reviews/ (the review feed's)."""
    return [info.key for prefix in ("results/", "reviews/") for info in store.list(prefix)
            if info.key.endswith((".jsonl", ".jsonl.gz"))]


@dataclass
class Demo:
    store: LocalStore
    #: each task's current row (the latest of its results/ and reviews/ lines): what the report shows
    records: list[dict[str, Any]]
    #: the results/ lines alone (machine scores, unless a review came before the harvest)
    results: list[dict[str, Any]]
    #: the reviews/ lines (one per review the feed saw)
    reviews: list[dict[str, Any]] = field(default_factory=list)


def read_jsonl(store: ObjectStore, prefix: str = "results/") -> list[dict[str, Any]]:
    """Every line of every part, read straight from the store (the test's own reading)."""
    lines = []
    for info in store.list(prefix):
        if not info.key.endswith((".jsonl", ".jsonl.gz")):
            continue
        body = store.get(info.key).body
        if info.key.endswith(".gz"):
            body = gzip.decompress(body)
        lines.extend(json.loads(line) for line in body.splitlines() if line.strip())
    return lines


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    from qcflow.tools.demo import run_demo

    root = tmp_path_factory.mktemp("report-demo") / "data"
    summary = run_demo(30, store_url=f"file:{root}", task_seconds=0.3, failure_rate=0.3)
    assert summary.harvested == 30 and summary.failed >= 1, summary
    store = LocalStore(root)
    from zoneinfo import ZoneInfo

    from tests.report.expected import latest

    results, reviews = read_jsonl(store), read_jsonl(store, "reviews/")
    current = latest(results, reviews, ZoneInfo("Asia/Shanghai"))
    return Demo(store, list(current.values()), results, reviews)


@dataclass
class PartWriter:
    """Writes hand-made JSONL parts in the harvest's layout."""

    store: ObjectStore
    seq: int = 0
    keys: list[str] = field(default_factory=list)

    def part(self, day: str, hour: str, lines: list[Any], *, gz: bool = False) -> str:
        self.seq += 1
        body = b"".join((line if isinstance(line, bytes) else json.dumps(line, ensure_ascii=False).encode()) + b"\n"
                        for line in lines)
        key = f"results/dt={day}/hour={hour}/part-{self.seq:010d}-test.jsonl" + (".gz" if gz else "")
        self.store.put(key, gzip.compress(body) if gz else body)
        self.keys.append(key)
        return key


@pytest.fixture
def parts(tmp_path: Path) -> PartWriter:
    return PartWriter(LocalStore(tmp_path / "store"))


def record(task: str, *, state: str = "finished", score: Any = 90, agent: Any = None, rules: Any = (),
           error: str | None = None, review_status: Any = 0, upload: str = "2026-11-20T10:00:00+08:00",
           **extra: Any) -> dict[str, Any]:
    """A JSONL line shaped like ``to_record``'s (only the fields the report reads matter)."""
    hits = rules
    if isinstance(rules, (list, tuple)):  # (rid, name) pairs become hits; anything else is kept as given
        hits = [{"rid": r[0], "name": r[1], "type": "服务规范", "score": -5, "hits": [], "conditions": []}
                if isinstance(r, tuple) else r for r in rules]
    line = {
        "schema_version": 1, "task_id": task, "status": 1 if state == "finished" else 6, "state": state,
        "call_id": f"job-{task}", "contact_id": f"job-{task}", "object_key": f"ccc/job-{task}.mkv", "upload_time": upload,
        "score": score if state == "finished" else None, "error_message": error, "review_status": review_status,
        "agent": agent, "hit_result": hits if state == "finished" else None, "harvested_at": "2026-11-20T03:00:00+00:00",
    }
    line.update(extra)
    return line


# ------------------------------------------------------------------------------ browser


@dataclass
class Rendered:
    """A report page loaded in headless Chromium, and what the browser saw while loading it."""

    page: Any
    url: str
    requests: list[str]
    console: list[tuple[str, str]]
    page_errors: list[str]

    def js(self, script: str) -> Any:
        return self.page.evaluate(script)

    @property
    def data(self) -> dict[str, Any]:
        return self.js("JSON.parse(document.getElementById('qcflow-report-data').textContent)")

    def errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"] + self.page_errors


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in the main thread while
    it is open, which would break every later test that runs ``asyncio.run``."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium; or set CHROMIUM_BIN)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def render(browser: Any) -> Iterator[Any]:
    """``render(path)``: open a page offline, every request observed and any non-file one refused."""
    contexts = []

    def open_page(path: Path) -> Rendered:
        context = browser.new_context(viewport={"width": 1360, "height": 900}, offline=True)
        contexts.append(context)
        page = context.new_page()
        url = path.resolve().as_uri()
        seen = Rendered(page, url, [], [], [])
        page.on("request", lambda request: seen.requests.append(request.url))
        page.on("console", lambda message: seen.console.append((message.type, message.text)))
        page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
        page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
        page.goto(url)
        page.wait_for_selector("body[data-rendered]", timeout=60_000)
        return seen

    yield open_page
    for context in contexts:
        context.close()
