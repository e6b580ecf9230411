"""A chaos schedule as a pure function of its seed: what happens, in which order, to what.

``make_plan(seed)`` draws everything from ``random.Random(seed)``: the recordings (good
ones, and ones that must end as recorded failures or be ignored), the sandbox's fault rates
and fault seed, and the steps — bursts of OSS deliveries with duplicates, crashing child
processes, overlapping harvests, held/duplicated/forged callbacks, latency spikes, and the
passing of SCA's 2-hour ``callUuid`` window. The same seed always gives the same plan;
which request meets which fault also depends on thread timing, which no seed fixes.

Crash points are spread so that any 4 consecutive seeds cover every point: seed ``s``
always crashes push at ``PUSH_POINTS[s % 4]`` and harvest at ``HARVEST_POINTS[s % 4]``.
Half the seeds harvest without a lookback, so that the checkpoint alone must be right.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, Union

from tests.chaos.crashing import AFTER_SCA, HARVEST_BEFORE_CHECKPOINT, HARVEST_POINTS, PUSH_POINTS

Kind = Literal["good", "no_contact", "unknown_contact", "not_recording"]
#: FC instances per function in a world (each a separately loaded handler module).
PUSH_INSTANCES = 3


@dataclass(frozen=True)
class RecordingSpec:
    key: str
    kind: Kind
    metadata: dict[str, str] | None = None
    #: The ContactId SCA should know the recording by (good recordings).
    contact: str | None = None


@dataclass(frozen=True)
class Event:
    """One OSS trigger invocation: its records' keys, FC request id, and FC instance."""

    keys: tuple[str, ...]
    request_id: str
    instance: int


@dataclass(frozen=True)
class Deliver:
    events: tuple[Event, ...]
    concurrent: bool
    op: str = "deliver"


@dataclass(frozen=True)
class CrashPush:
    """A child process runs this event and dies at ``point``; ``shifted``: its claim has
    expired by then (the retry is a takeover), else it is alive (the retry is "our own")."""

    keys: tuple[str, ...]
    point: str
    shifted: bool
    request_id: str
    duplicate: bool
    op: str = "crash_push"


@dataclass(frozen=True)
class CrashHarvest:
    """A child process harvests (timer, or the callback path for ``via == "callback"``, hinting
    at a finished task not written yet) and dies at ``point``."""

    point: str
    via: Literal["timer", "callback"]
    op: str = "crash_harvest"


@dataclass(frozen=True)
class Harvest:
    """``runs`` timer invocations at once on different instances (overlapping: the lease
    lets one work); ``backfill``: one of them carries a backfill payload."""

    runs: int
    backfill: bool
    op: str = "harvest"


@dataclass(frozen=True)
class Callbacks:
    """Deliver the held callbacks, ``duplicates`` of them once more, and made-up ones:
    ``forged`` well-signed hints for tasks that do not exist or are still running,
    ``refused`` ones with a bad signature, a stale timestamp or junk."""

    duplicates: int
    forged: int
    refused: int
    op: str = "callbacks"


@dataclass(frozen=True)
class Hold:
    on: bool
    op: str = "hold"


@dataclass(frozen=True)
class Amnesia:
    """SCA forgets every callUuid: what two hours of waiting do to its duplicate check."""

    op: str = "amnesia"


@dataclass(frozen=True)
class Spike:
    """Latency on every answer, up to ``seconds`` (beyond the client's read timeout: the
    request is processed, the answer comes too late)."""

    seconds: float
    op: str = "spike"


@dataclass(frozen=True)
class WaitTasks:
    op: str = "wait_tasks"


@dataclass(frozen=True)
class Pause:
    seconds: float
    op: str = "pause"


@dataclass(frozen=True)
class ColdStart:
    instance: int
    op: str = "cold_start"


Step = Union[Deliver, CrashPush, CrashHarvest, Harvest, Callbacks, Hold, Amnesia, Spike, WaitTasks, Pause, ColdStart]


@dataclass(frozen=True)
class Faults:
    server_error_rate: float
    throttle_rate: float
    business_failure_rate: float
    drop_rate: float
    lost_answer_rate: float


@dataclass
class Plan:
    seed: int
    recordings: list[RecordingSpec]
    faults: Faults
    task_failure_rate: float
    #: Share of SCA's callbacks that never reach the callback function.
    callback_loss_rate: float = 0.0
    #: ``QCFLOW_HARVEST_LOOKBACK_SECONDS``: 0 leaves no second chance to a checkpoint moved too early.
    lookback_seconds: int = 3600
    steps: list[Step] = field(default_factory=list)

    @property
    def crash_points(self) -> list[str]:
        return [s.point for s in self.steps if isinstance(s, (CrashPush, CrashHarvest))]

    def describe(self) -> str:
        kinds: dict[str, int] = {}
        for r in self.recordings:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        ops: dict[str, int] = {}
        for s in self.steps:
            ops[s.op] = ops.get(s.op, 0) + 1
        return (f"seed {self.seed}: {len(self.recordings)} recordings {kinds}; faults {self.faults}; "
                f"task failure rate {self.task_failure_rate}; callback loss {self.callback_loss_rate}; lookback {self.lookback_seconds} s; {len(self.steps)} steps {ops}; crashes {self.crash_points}")


def make_plan(seed: int, recordings: tuple[int, int] = (20, 30)) -> Plan:
    rng = random.Random(seed)
    specs = _recordings(rng, seed, rng.randint(*recordings))
    faults = Faults(
        server_error_rate=rng.choice([0.0, 0.03, 0.08]),
        throttle_rate=rng.choice([0.0, 0.03, 0.08]),
        business_failure_rate=rng.choice([0.0, 0.02, 0.05]),
        drop_rate=rng.choice([0.0, 0.02, 0.05]),
        lost_answer_rate=rng.choice([0.02, 0.05, 0.1]),
    )
    plan = Plan(seed, specs, faults, task_failure_rate=rng.choice([0.0, 0.1, 0.2]),
                callback_loss_rate=rng.choice([0.0, 0.3, 0.6]), lookback_seconds=(0, 3600)[seed % 2])
    ids = _Ids(seed)
    todo = [s for s in specs]
    rng.shuffle(todo)
    batches: list[list[RecordingSpec]] = []
    while todo:
        size = rng.randint(3, 7)
        batches.append(todo[:size])
        todo = todo[size:]
    # crashes: one push point fixed by the seed (coverage), maybe a second; one harvest point
    push_points = [PUSH_POINTS[seed % len(PUSH_POINTS)]]
    if rng.random() < 0.5:
        push_points.append(rng.choice([p for p in PUSH_POINTS if p not in push_points]))
    harvest_point = HARVEST_POINTS[seed % len(HARVEST_POINTS)]
    good_batches = [i for i, b in enumerate(batches) if any(r.kind == "good" for r in b)]
    crash_at = dict(zip(rng.sample(good_batches, min(len(push_points), len(good_batches))), push_points))
    later = [i for i in good_batches if i >= len(batches) // 2] or good_batches
    harvest_crash_at = rng.choice(later)
    delivered: list[str] = []
    steps = plan.steps
    for index, batch in enumerate(batches):
        holding = index == harvest_crash_at
        if holding:
            steps.append(Hold(True))
        keys = [r.key for r in batch]
        point = crash_at.get(index)
        after_sca = False
        if point is not None:
            good = [r.key for r in batch if r.kind == "good"]
            chosen = good[: rng.randint(1, min(3, len(good)))]
            shifted = rng.random() < 0.5
            steps.append(CrashPush(tuple(chosen), point, shifted, ids.next("crash"), duplicate=rng.random() < 0.5))
            keys = [k for k in keys if k not in chosen]
            delivered.extend(chosen)
            after_sca = point in AFTER_SCA
        spike = rng.random() < 0.15
        if spike:
            steps.append(Spike(round(rng.uniform(0.7, 1.2), 2)))
        events: list[Event] = []
        rng.shuffle(keys)
        while keys:
            take = rng.choice([1, 1, 1, 2, 3])
            group, keys = tuple(keys[:take]), keys[take:]
            events.append(Event(group, ids.next("oss"), rng.randrange(PUSH_INSTANCES)))
            if rng.random() < 0.25:  # OSS delivers the event twice (at once)
                events.append(Event(group, ids.next("dup"), rng.randrange(PUSH_INSTANCES)))
            delivered.extend(group)
        if events:
            steps.append(Deliver(tuple(events), concurrent=rng.random() < 0.75))
        if spike:
            steps.append(Spike(0.0))
        if after_sca and rng.random() < 0.7 or rng.random() < 0.25:
            steps.append(Amnesia())
        if delivered and rng.random() < 0.4:  # late duplicates of earlier recordings
            late = rng.sample(delivered, min(len(delivered), rng.randint(1, 3)))
            steps.append(Deliver(tuple(Event((k,), ids.next("late"), rng.randrange(PUSH_INSTANCES)) for k in late),
                                 concurrent=rng.random() < 0.5))
        if holding:
            steps.append(WaitTasks())
            via = "callback" if harvest_point != HARVEST_BEFORE_CHECKPOINT and rng.random() < 0.25 else "timer"
            steps.append(CrashHarvest(harvest_point, via))
            steps.append(Hold(False))
        elif rng.random() < 0.5:
            steps.append(Harvest(runs=rng.choice([1, 2, 2, 3]), backfill=rng.random() < 0.15))
        if rng.random() < 0.5:
            steps.append(Callbacks(duplicates=rng.randint(0, 3), forged=rng.randint(0, 2), refused=rng.randint(0, 2)))
        if rng.random() < 0.2:
            steps.append(Pause(round(rng.uniform(0.05, 0.3), 2)))
        if rng.random() < 0.1:
            steps.append(ColdStart(rng.randrange(PUSH_INSTANCES)))
    return plan


class _Ids:
    """FC request ids, unique per seed and readable in traces."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.count = 0

    def next(self, kind: str) -> str:
        self.count += 1
        return f"s{self.seed}-{kind}-{self.count:03d}"


def _recordings(rng: random.Random, seed: int, count: int) -> list[RecordingSpec]:
    specs: list[RecordingSpec] = []
    for i in range(count):
        kind: Kind = rng.choices(["good", "no_contact", "unknown_contact", "not_recording"], weights=[82, 6, 6, 6])[0]
        number = 7_000_000 + seed * 1000 + i
        if kind == "good":
            ext = rng.choice([".mkv", ".wav", ".MP3"])
            specs.append(RecordingSpec(f"ccc/2026/11/20/job-{number}{ext}", "good", contact=f"job-{number}"))
        elif kind == "no_contact":
            specs.append(RecordingSpec(f"ccc/2026/11/20/rec-{number}.wav", "no_contact"))
        elif kind == "unknown_contact":
            specs.append(RecordingSpec(f"ccc/2026/11/20/call-{number}.mkv", "unknown_contact", {"contact-id": f"nobody-{number}"}))
        else:
            specs.append(RecordingSpec(rng.choice([f"ccc/2026/11/20/job-{number}.txt", f"other/job-{number}.mkv"]), "not_recording"))
    if not any(s.kind == "good" for s in specs):
        number = 7_000_000 + seed * 1000 + count
        specs.append(RecordingSpec(f"ccc/2026/11/20/job-{number}.mkv", "good", contact=f"job-{number}"))
    return specs
