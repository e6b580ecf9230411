"""One role per function (issue 25): each function's own handler calls only what its role allows.

``tests/test_infra.py`` checks the policies' shape and that together they cover the code.
Here each function's real handler (``functions/<name>/index.py``) runs against the sandbox,
on loopback, through the paths that reach the store and the APIs differently: a fresh push,
a push whose answer was lost (its taskId unknown), a take-over that looks an earlier attempt
up, a callback that resolves that unknown taskId, harvest passes that remember an unfinished
task, resolve it, prune superseded state, and a backfill. Every store operation and ACS
call is recorded with the function that made it, turned into the RAM action(s) and resource
OSS or SCA authorizes it as, and evaluated against that function's rendered policy:

- every call is allowed by the function's own policy (too narrow a role would fail in FC);
- every statement (and every resource of it) is used by some call of that function, but for
  the platform's own grants (too wide a role is caught as well);
- the callback makes no UploadAudioData, no CCC call, no read of a recording.

The OSS actions a store operation needs are read from ``qcflow.store.oss`` itself (which
client calls each ``OssStore`` method makes, helpers followed), so the map follows the code.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from qcflow.acs.client import AcsClient
from qcflow.callback import callback_signature
from qcflow.ccc import CCC_VERSION
from qcflow.ledger import Ledger
from qcflow.sca import SCA_VERSION
from qcflow.store.local import LocalStore
from qcflow.tools.fc_local import context_for, http_event, load_handler_module, timer_event
from qcflow.tools.sandbox.options import DEFAULT_ALI_UID, FaultOptions, SandboxOptions
from tests.push.conftest import FC_CREDS, PushWorld, push_world
from tests.test_infra import (
    ACCOUNT,
    BUCKET,
    FUNCTIONS,
    OSS_ACTION_FOR_SDK_CALL,
    PLATFORM_ACTIONS,
    POLICY,
    RECORDINGS_PREFIX,
    SHARED,
    STORE_ROOT,
    VALUES,
    as_list,
    render,
)

#: Store operations of the ``ObjectStore`` protocol the functions use.
STORE_OPERATIONS = ("get", "head", "list", "put", "create_if_absent", "delete", "open_writer", "signed_get_url")
#: The callback's URL token (issue 25's edge): set always, read where the settings know it.
CALLBACK_TOKEN = "roles-test-callback-token-0123456789"
#: OSS actions authorized on the bucket itself rather than on an object.
BUCKET_ACTIONS = {"oss:ListObjects", "oss:GetBucketVersioning"}


# ------------------------------------------------------------------ store operation -> RAM


def _client_calls_by_method() -> dict[str, set[str]]:
    """For each method of ``OssStore`` (and ``open_writer``: its writer's), the OSS client calls
    it can make, following calls to the class's own helpers."""
    tree = ast.parse((SHARED / "store" / "oss.py").read_text(encoding="utf-8"))
    direct: dict[tuple[str, str], set[str]] = {}
    helpers: dict[tuple[str, str], set[str]] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in ("OssStore", "OssWriter")):
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            calls: set[str] = set()
            own: set[str] = set()
            for node in ast.walk(method):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                target = node.func.value
                if isinstance(target, ast.Attribute) and target.attr == "_client":
                    calls.add(node.func.attr.removesuffix("_paginator"))
                elif isinstance(target, ast.Name) and target.id == "self":
                    own.add(node.func.attr)
            direct[(cls.name, method.name)] = calls
            helpers[(cls.name, method.name)] = own

    def reach(cls: str, name: str, seen: set[tuple[str, str]]) -> set[str]:
        if (cls, name) in seen or (cls, name) not in direct:
            return set()
        seen.add((cls, name))
        found = set(direct[(cls, name)])
        for helper in helpers[(cls, name)]:
            found |= reach(cls, helper, seen)
        return found

    result = {name: reach("OssStore", name, set()) for name in STORE_OPERATIONS}
    writer = {name for (cls, name) in direct if cls == "OssWriter"}
    for name in writer:
        result["open_writer"] |= reach("OssWriter", name, set())
    return result


def oss_actions_for(operation: str) -> set[str]:
    calls = _client_calls_by_method()[operation]
    unmapped = calls - set(OSS_ACTION_FOR_SDK_CALL)
    assert not unmapped, f"OssStore.{operation} calls {sorted(unmapped)}: map them in tests/test_infra.py"
    return {action for call in calls if (action := OSS_ACTION_FOR_SDK_CALL[call]) is not None}


# ------------------------------------------------------------------------ policy evaluation


@dataclass(frozen=True)
class Request:
    """One authorization RAM makes: an action on a resource (and a listing's prefix)."""

    function: str
    action: str
    resource: str
    prefix: str | None = None
    what: str = ""


def allowing(policy: dict[str, Any], request: Request) -> list[tuple[int, str]]:
    """The (statement number, resource pattern) pairs of ``policy`` that allow ``request``."""
    found = []
    for number, statement in enumerate(policy["Statement"], start=1):
        assert statement["Effect"] == "Allow"
        if request.action not in as_list(statement["Action"]):
            continue
        condition = statement.get("Condition")
        if condition is not None:
            patterns = condition["StringLike"]["oss:Prefix"]
            if request.prefix is None or not any(fnmatch.fnmatchcase(request.prefix, p) for p in as_list(patterns)):
                continue
        for pattern in as_list(statement["Resource"]):
            if fnmatch.fnmatchcase(request.resource, pattern):
                found.append((number, pattern))
    return found


# --------------------------------------------------------------------------------- tracing


class Tracer:
    """Records every store operation and ACS call, with the function running at that moment."""

    def __init__(self, world: PushWorld) -> None:
        self.world = world
        self.current: str | None = None
        self.requests: list[Request] = []
        self.acs: list[tuple[str, str, str]] = []  # function, API version, action
        self._lock = threading.Lock()

    def _object(self, root: Path, key: str) -> tuple[str, str]:
        """The bucket and the full object key a local store's key stands for."""
        if Path(root) == Path(self.world.state.root):
            return BUCKET, f"{STORE_ROOT}{key}"
        assert Path(root) == Path(self.world.recordings.root), root
        return BUCKET, key  # recordings_bucket = bucket in VALUES: under recordings_prefix

    def store_operation(self, root: Path, operation: str, key: str) -> None:
        if self.current is None:
            return  # the test's own set-up
        bucket, full = self._object(root, key)
        with self._lock:
            for action in sorted(oss_actions_for(operation)):
                if action == "oss:ListObjects":
                    request = Request(self.current, action, f"acs:oss:*:{ACCOUNT}:{bucket}", full, f"list {full}")
                elif action == "oss:GetBucketVersioning":
                    request = Request(self.current, action, f"acs:oss:*:{ACCOUNT}:{bucket}", None, operation)
                else:
                    request = Request(self.current, action, f"acs:oss:*:{ACCOUNT}:{bucket}/{full}", None, operation)
                self.requests.append(request)

    def acs_call(self, version: str, action: str) -> None:
        if self.current is None:
            return
        with self._lock:
            self.acs.append((self.current, version, action))
            if version == SCA_VERSION:
                self.requests.append(Request(self.current, f"sca:{action}", "*", None, action))
            # CCC: no RAM action (the system policy on push's role); checked below by function

    @property
    def functions(self) -> set[str]:
        return {r.function for r in self.requests}

    def running(self, function: str) -> Any:
        tracer = self

        class _Running:
            def __enter__(self) -> None:
                tracer.current = function

            def __exit__(self, *exc: object) -> None:
                tracer.current = None

        return _Running()


def install(monkeypatch: pytest.MonkeyPatch, tracer: Tracer) -> None:
    for name in STORE_OPERATIONS:
        original = getattr(LocalStore, name)

        def traced(
            self: LocalStore,
            key: str = "",
            *args: Any,
            _original: Callable[..., Any] = original,
            _name: str = name,
            **kwargs: Any,
        ) -> Any:
            tracer.store_operation(Path(self.root), _name, key)
            return _original(self, key, *args, **kwargs)

        monkeypatch.setattr(LocalStore, name, traced)
    original_call = AcsClient.call

    async def call(self: AcsClient, action: str, *args: Any, **kwargs: Any) -> Any:
        tracer.acs_call(self.version, action)
        return await original_call(self, action, *args, **kwargs)

    monkeypatch.setattr(AcsClient, "call", call)


# ------------------------------------------------------------------------------- scenarios


def run_every_path(world: PushWorld, tracer: Tracer) -> dict[str, Any]:
    """Push, callback and harvest through their real handlers, each path once."""
    app = world.server.app
    plain = app.options

    def configure(options: SandboxOptions) -> None:  # the gateway and the SCA model each hold them
        app.options = app.sca.options = options

    keys = [f"ccc/2026/11/20/job-{n}.mkv" for n in range(1, 6)]
    for key in keys:
        world.put_recording(key)
    answers: dict[str, Any] = {}
    push = world.instance()
    with tracer.running("push"):
        answers["fresh"] = world.deliver(push, keys[0])
        answers["again"] = world.deliver(push, keys[0])  # a duplicate event: the ledger answers
    # an upload whose answer is lost twice: submitted with its taskId unknown (a marker)
    configure(replace(plain, faults=FaultOptions(lost_answer_rate=1.0, actions=frozenset({"UploadAudioData"}))))
    with tracer.running("push"):
        answers["lost"] = world.deliver(push, keys[1])
    configure(plain)
    # an earlier attempt's claim expired without an outcome: the take-over looks it up first
    now = time.time()
    Ledger(world.state).claim(
        world.location(keys[2]), token="fc-crashed", now=now - 100, expires_at=now - 1, key=keys[2], contact_id="job-3"
    )
    with tracer.running("push"):
        answers["takeover"] = world.deliver(push, keys[2])
    # the callback of the lost answer's task: written, and its unknown taskId noted
    (lost,) = world.tasks_for("job-2")
    time.sleep(0.4)  # the sandbox finishes it 0.2 s after its upload
    app.sca.review(lost.task_id)  # reviewed before its callback came: the callback writes the review row too
    callback = load_handler_module("callback")
    world.modules.append(callback)
    stamp = str(int(time.time() * 1000))
    query = {
        "taskId": lost.task_id,
        "timestamp": stamp,
        "aliUid": DEFAULT_ALI_UID,
        "event": "TaskComplete",
        "signature": callback_signature(lost.task_id, stamp, DEFAULT_ALI_UID),
    }
    with tracer.running("callback"):
        answers["callback"] = callback.handler(
            http_event("GET", f"/sca-callback/{CALLBACK_TOKEN}", query), context_for("callback", FC_CREDS)
        )
    # for harvest: a lost answer nobody calls back, and a task that runs for a while
    configure(replace(plain, faults=FaultOptions(lost_answer_rate=1.0, actions=frozenset({"UploadAudioData"}))))
    with tracer.running("push"):
        world.deliver(push, keys[4])
    configure(replace(plain, task_seconds=3.0, task_jitter_seconds=0.0))
    with tracer.running("push"):
        world.deliver(push, keys[3])
    configure(plain)
    (fresh,) = world.tasks_for("job-1")
    app.sca.review(fresh.task_id)  # the timer's review feed writes this one
    harvest = load_handler_module("harvest")
    world.modules.append(harvest)
    passes = []
    # the running task is remembered, then resolved; from the fifth lease on, old ones are pruned
    for pause in (1.2, 1.0, 1.0, 0.5, 0.1):
        time.sleep(pause)
        with tracer.running("harvest"):
            passes.append(harvest.handler(timer_event(), context_for("harvest", FC_CREDS, timeout=120)))
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    for _ in range(5):  # backfills have a lease of their own, pruned alike
        with tracer.running("harvest"):
            passes.append(harvest.handler(timer_event({"since": since}), context_for("harvest", FC_CREDS, timeout=120)))
    answers["harvest"] = passes
    # the pass's compaction, as a later timer pass runs it once these hours are closed (here: now + 3 h)
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from qcflow.harvest import compact as cp

    later = datetime.now(timezone.utc) + timedelta(hours=3)
    compacted = []
    with tracer.running("harvest"):
        for room in (cp.RESULTS, cp.REVIEWS):
            stats = cp.compact_range(
                world.state, room, zone=ZoneInfo("Asia/Shanghai"), now=later, settle_seconds=0, lookback_seconds=0,
                run_id="compact-trace", gzip=False, max_bytes=256 << 20, unfinished_rule=False,
            )
            compacted.append(stats)
    answers["compacted"] = compacted
    return answers


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tracer, dict[str, Any]]]:
    monkeypatch = pytest.MonkeyPatch()
    try:
        options = replace(SandboxOptions(), task_seconds=0.2, task_jitter_seconds=0.0)
        with push_world(
            tmp_path_factory.mktemp("roles"),
            monkeypatch,
            options,
            QCFLOW_HARVEST_SETTLE_SECONDS="0",
            QCFLOW_HARVEST_START_SECONDS="3600",
            QCFLOW_CALLBACK_TOKEN=CALLBACK_TOKEN,
        ) as world:
            tracer = Tracer(world)
            install(monkeypatch, tracer)
            yield tracer, run_every_path(world, tracer)
    finally:
        monkeypatch.undo()


# ------------------------------------------------------------------------------------ tests


def test_the_paths_ran_as_intended(traced: tuple[Tracer, dict[str, Any]]) -> None:
    tracer, answers = traced
    assert answers["fresh"] == {"records": 1, "submitted": 1}
    assert answers["again"] == {"records": 1, "already_submitted": 1}
    assert answers["lost"] == {"records": 1, "submitted": 1}
    assert answers["takeover"] == {"records": 1, "submitted": 1}
    assert answers["callback"]["statusCode"] == 200 and json.loads(answers["callback"]["body"])["written"] == 1
    passes = answers["harvest"]
    assert passes[0]["unfinished_remembered"] >= 1 and sum(p["unfinished_resolved"] for p in passes) >= 1
    assert sum(p["written"] for p in passes) >= 3
    assert passes[-1]["mode"] == "backfill"
    assert tracer.functions == set(FUNCTIONS)
    assert ("push", SCA_VERSION, "GetResult") in tracer.acs, "the take-over's look-up ran"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_calls_only_what_its_role_allows(traced: tuple[Tracer, dict[str, Any]], function: str) -> None:
    tracer, _ = traced
    policy = render(POLICY / f"qcflow-{function}.json")
    denied = sorted(
        {
            (r.action, r.resource, r.prefix, r.what)
            for r in tracer.requests
            if r.function == function and not allowing(policy, r)
        }
    )
    assert not denied, f"{function}'s role would refuse: {denied}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_grant_of_a_role_is_used_by_its_function(traced: tuple[Tracer, dict[str, Any]], function: str) -> None:
    tracer, _ = traced
    policy = render(POLICY / f"qcflow-{function}.json")
    used = {hit for r in tracer.requests if r.function == function for hit in allowing(policy, r)}
    unused = []
    for number, statement in enumerate(policy["Statement"], start=1):
        if set(as_list(statement["Action"])) <= PLATFORM_ACTIONS:
            continue  # Function Compute's own (dead letters, logs): no qcflow code calls them
        for pattern in as_list(statement["Resource"]):
            if (number, pattern) not in used:
                unused.append((number, statement["Action"], pattern))
    assert not unused, f"{function}'s role grants what its code never used: {unused}"
    actions = {a for s in policy["Statement"] for a in as_list(s["Action"])} - PLATFORM_ACTIONS
    assert actions == {r.action for r in tracer.requests if r.function == function}


def test_the_callback_never_uploads_reads_recordings_or_calls_ccc(traced: tuple[Tracer, dict[str, Any]]) -> None:
    tracer, _ = traced
    for function in ("callback", "harvest"):
        calls = {(version, action) for f, version, action in tracer.acs if f == function}
        assert calls == {(SCA_VERSION, "GetResult")}, function
        recordings = f"acs:oss:*:{ACCOUNT}:{BUCKET}/{RECORDINGS_PREFIX}"
        assert not [r for r in tracer.requests if r.function == function and r.resource.startswith(recordings)]
    assert {(f, a) for f, version, a in tracer.acs if version == CCC_VERSION} == {("push", "GetUploadAudioDataParams")}
    assert VALUES["recordings_bucket"] == BUCKET  # the resources above are built for that case
