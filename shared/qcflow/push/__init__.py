"""The push use case: every recording becomes exactly one SCA task, or a recorded failure.

Free of Function Compute details: it takes settings, the CCC and SCA clients, the state store
(ledger) and the recordings store. Per recording:

1. **filter** — objects under the store's own ``state/``/``results/`` (no recursive triggers),
   outside ``QCFLOW_RECORDING_PREFIX`` or without an audio suffix are ignored, with a log line;
2. **resolve** — ``head`` the object (the key as given, then URL-decoded only if the raw key is
   not found); the ContactId from the metadata header or ``QCFLOW_CONTACT_ID_PATTERN``;
3. **claim** the recording in the ledger *before any API call* (``qcflow.ledger``);
4. CCC ``GetUploadAudioDataParams`` → the ``UploadAudioData`` call item; the ``voiceFileUrl``
   must stay fetchable for ``QCFLOW_AUDIO_URL_MIN_SECONDS`` (12 h) or the push fails, recorded;
5. if an earlier attempt may have reached SCA (our own claim seen again, or a takeover),
   **look it up** in SCA (``GetResult`` by ``callId``) before sending: ``callUuid`` only
   covers 2 hours and FC retries can come later;
6. **send** in batches (``callList``), each recording with its deterministic ``callUuid``;
   a batch refused for one repeated ``callUuid`` (or failing permanently) is split and its
   recordings sent again one by one; a repeat of a single recording means "already in SCA":
   recorded as submitted with the taskId unknown (harvest fills it in from ``callId``);
7. **record** the outcome. Permanent errors are recorded as failed (``qcflow replay`` re-pushes
   them); retryable ones that outlast the deadline leave the claim and are reported as
   ``retry`` so the caller raises and FC's async retry takes over.

Where each part lives (at module level, each imports only those listed before it):

- ``results`` — ``PushResult`` (what happened to one recording) and its log line;
- ``recordings`` — steps 1–2: which objects are recordings, ``Recording``, ``object_location``;
- ``calls`` — step 4's request building, pure: call items, the URL lifetime check, batches;
- ``pusher`` — steps 3–7: the ``Pusher``;
- ``replay`` — ``qcflow replay`` and ``backfill`` (``qcflow push --prefix``), through the ``Pusher``;
  operators' commands, not re-exported here: the push function never loads them.

The OSS trigger's adapter is ``qcflow.triggers.push_oss_event``.
"""

from qcflow.push.pusher import CLAIM_MARGIN_SECONDS, LOOKUP_SLACK_SECONDS, Pusher
from qcflow.push.recordings import CONTACT_LOCATION, Recording, RecordingFinder, object_location
from qcflow.push.results import PushResult, PushStatus

__all__ = [
    "CLAIM_MARGIN_SECONDS",
    "CONTACT_LOCATION",
    "LOOKUP_SLACK_SECONDS",
    "PushResult",
    "PushStatus",
    "Pusher",
    "Recording",
    "RecordingFinder",
    "object_location",
]
