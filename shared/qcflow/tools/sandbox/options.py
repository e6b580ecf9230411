"""What a sandbox can be told: credentials, quotas, faults, task timing, pre-loaded results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from qcflow.tools.sandbox.reviews import ReviewOptions

#: Documented defaults (docs/sandbox.md): the sandbox accepts this key pair unless told otherwise.
DEFAULT_ACCESS_KEY_ID = "qcflow-sandbox-id"
DEFAULT_ACCESS_KEY_SECRET = "qcflow-sandbox-secret"
#: The account id (aliUid) the sandbox signs its callbacks with: 16 digits, like a real one.
DEFAULT_ALI_UID = "1688000000000001"


@dataclass(frozen=True)
class QuotaOptions:
    """Calls allowed per API per ``window_seconds``, as SCA's quota page states (per account).

    ``None`` lifts a quota. Benchmarks scale time by shrinking ``window_seconds`` and the
    limits together.
    """

    get_result: int | None = 1000
    upload_audio_data: int | None = 3000
    get_upload_audio_data_params: int | None = None  # CCC publishes no figure
    window_seconds: float = 60.0

    def limit_for(self, action: str) -> int | None:
        return {
            "GetResult": self.get_result,
            "UploadAudioData": self.upload_audio_data,
            "GetUploadAudioDataParams": self.get_upload_audio_data_params,
        }.get(action)


@dataclass(frozen=True)
class FaultOptions:
    """Faults injected before a request is served, each with its own probability (0..1).

    ``actions`` limits them to some APIs (empty: all). ``seed`` makes a run repeatable.
    """

    server_error_rate: float = 0.0  # HTTP 503 ServiceUnavailable
    throttle_rate: float = 0.0  # HTTP 400 Throttling.User, quota or not
    business_failure_rate: float = 0.0  # HTTP 200 with Success: false (SCA) / Code != OK (CCC)
    drop_rate: float = 0.0  # the connection is closed mid-answer, the request NOT processed
    lost_answer_rate: float = 0.0  # the request IS processed, then the connection is closed
    #: The same for a refusal (HTTP 200 ``Success: false``, e.g. ``CallUuidRepeated``): the API
    #: answered it, then the connection is closed. Apart from ``lost_answer_rate``, which loses
    #: successes only, so that a run configured before this option existed behaves as it did.
    lost_refusal_rate: float = 0.0
    latency_seconds: float = 0.0  # added to every answer
    latency_jitter_seconds: float = 0.0  # uniform extra 0..jitter
    actions: frozenset[str] = frozenset()
    seed: int | None = None

    def applies_to(self, action: str) -> bool:
        return not self.actions or action in self.actions


@dataclass(frozen=True)
class PreloadOptions:
    """``count`` finished results with upload times spread evenly over [start, end)."""

    count: int = 0
    start: datetime | None = None
    end: datetime | None = None
    failed_rate: float = 0.0  # share of pre-loaded tasks that failed (status 6)
    #: Pre-loaded tasks already reviewed (a backlog of reviews: every k-th finished one), each
    #: saved at a random time between its upload and ``end``.
    reviews: int = 0


@dataclass(frozen=True)
class SandboxOptions:
    access_key_id: str = DEFAULT_ACCESS_KEY_ID
    access_key_secret: str = DEFAULT_ACCESS_KEY_SECRET
    #: Tasks finish (status 1) this long after upload (plus up to ``task_jitter_seconds``)…
    task_seconds: float = 2.0
    task_jitter_seconds: float = 1.0
    #: …or fail (status 6) with this probability.
    task_failure_rate: float = 0.0
    #: A task is invisible to GetResult until this long after its upload (0: at once). SCA
    #: indexes results asynchronously (UNCONFIRMED how long): a lookup or a harvest window may
    #: miss a task that exists, and callUuid de-duplication still refuses its repeat.
    index_lag_seconds: float = 0.0
    #: SCA compares callUuid with uploads of this many past seconds (2 hours).
    call_uuid_window_seconds: float = 7200.0
    #: Requests whose x-acs-date is further than this from the sandbox's clock are refused.
    max_clock_skew_seconds: float = 900.0
    #: SCA's GetResult time zone (UNCONFIRMED; Asia/Shanghai assumed, as qcflow's default).
    time_zone: str = "Asia/Shanghai"
    quotas: QuotaOptions = field(default_factory=QuotaOptions)
    faults: FaultOptions = field(default_factory=FaultOptions)
    preload: PreloadOptions = field(default_factory=PreloadOptions)
    #: People reviewing and appealing finished results (``reviews.py``; off by default).
    reviews: ReviewOptions = field(default_factory=ReviewOptions)
    seed: int = 7
    #: GetResult deep paging. Strict (default): a page reaching past record 10,000
    #: (offset + pageSize > 10,000) needs the previous page's last ``LastDataId`` — the
    #: service may cap offset + pageSize at 10,000. Loose: only pages starting at or after
    #: record 10,000 need it.
    loose_deep_paging: bool = False
    #: Callbacks (``callbackUrl``): the account id they carry, and how they are sent.
    ali_uid: str = DEFAULT_ALI_UID
    callback_method: Literal["GET", "POST"] = "GET"
    #: Bound of each step (connect, write, read) and of the whole of one attempt.
    callback_timeout_seconds: float = 3.0
    #: Attempts per callback, the first included; the real retry policy is undocumented.
    callback_max_attempts: int = 3
    #: Pause before the second attempt, doubled before each later one.
    callback_retry_seconds: float = 1.0
    #: Callbacks in flight at once (all sent from the sender's one thread, asynchronously).
    callback_workers: int = 4
    #: Call non-loopback hosts too (off: the sandbox stays on loopback; such callbacks are skipped).
    callback_allow_remote: bool = False
    #: Faults for testing a receiver: a share of callbacks with a wrong signature, and a
    #: share with a correctly signed timestamp ``callback_stale_seconds`` in the past.
    callback_forge_rate: float = 0.0
    callback_stale_rate: float = 0.0
    callback_stale_seconds: float = 3600.0
    #: How long the recording URLs CCC hands out stay valid (the real CCC: 24 h, UNCONFIRMED).
    recording_url_seconds: int = 24 * 3600
    #: Actions the caller's RAM policy does not allow: answered 403 ``Forbidden.RAM`` after the
    #: signature is verified (a wrong secret fails earlier, with ``SignatureDoesNotMatch``).
    denied_actions: frozenset[str] = frozenset()
    #: KMS Secrets Manager: (secret name, value) pairs GetSecretValue answers (any other: not found).
    secrets: tuple[tuple[str, str], ...] = ()
