"""Every prefix qcflow writes under its store, named once.

A store (``QCFLOW_STORE``) holds three trees: ``state/`` (the bookkeeping that makes push and
harvest exactly-once: only qcflow reads it), ``results/`` (the harvest's output, which
reports and MaxCompute read) and ``reviews/`` (the review feed's output: one line per review
saved, beside the results). Objects under either are the store's own: an OSS event for one
of them is not a recording. The whole tree, with the module that owns each part (its
docstring says why each object exists)::

    state/
      push/                                     the push ledger (qcflow.ledger)
        records/<rid>/g000000.claim.json        who works on generation 0, until when
        records/<rid>/g000000.outcome.json      submitted (taskId…) or failed (code…)
        records/<rid>/g000000.released.json     its holder sent nothing and let it go
        records/<rid>/task-id.json              a taskId learnt later (harvest, from callId)
        failed/<rid>.g000000                    index of failures, for ``qcflow replay``
        unknown-task/<contact>/<rid>            submitted with the taskId unknown
        open/<rid>.g000000                      a generation claimed and not yet settled
        by-contact/<contact>                    a push by ContactId happened
      harvest/                                  harvest state (qcflow.harvest.state)
        lease/000000000007.json                 the timer run's lease (and ….released)
        backfill-lease/000000000003.json        the backfill's own lease
        checkpoint/000000000042.json            every result uploaded before ``through`` was read
        unfinished/<result>.json                a result seen running: polled until it finishes
        stuck/<result>.json                     polled no more: running past the maximum age
        commits/dt=…/hour=…/0000000012.json     the exactly-once writer's commit records
        pending/dt=…/hour=…/0000000012-<run>.json   intent, until the part exists
        manifests/dt=<day>/<run>.json           one per harvest run: its files and counts
      reviews/                                  the review feed's state (qcflow.harvest.reviews)
        checkpoint/000000000009.json            every review saved before ``through`` was read
        backfill-lease/000000000002.json        ``qcflow harvest --reviews --since``'s own lease
        commits/dt=…/hour=…/0000000003.json     commit records of ``reviews/`` (review hour)
        pending/dt=…/hour=…/0000000003-<run>.json   intent, until the part exists
    results/
      dt=<day>/hour=<hh>/part-0000000012-<run>.jsonl[.gz]   the lines of one commit record
                                                (qcflow.harvest.output; read by qcflow.tools.report)
      dt=<day>/hour=<hh>/part-0000000040-c0.jsonl[.gz]      a closed hour compacted: the parts of
                                                the records its compaction record folds
      dt=<day>/hour=<hh>/_compact/part-0000000040-c0.jsonl[.gz]  its hidden copy while it is
                                                in flight (qcflow.harvest.compact; ``_``: Hive skips it)
    reviews/
      dt=<day>/hour=<hh>/part-0000000003-<run>.jsonl[.gz]   one line per review, by review hour
      dt=<day>/hour=<hh>/part-0000000040-c0.jsonl[.gz]      compacted, as under results/

Every object under ``state/`` is written once (``qcflow.journal``) and never overwritten;
only markers their owner is done with are deleted. ``<rid>`` is a hash of the recording's
location, ``<contact>`` and ``<result>`` are ``journal`` key segments.

"""

from __future__ import annotations

#: The bookkeeping tree, and the output trees (results; reviews).
STATE = "state/"
RESULTS = "results/"
REVIEWS = "reviews/"
#: Every tree qcflow writes itself (an object event under one of them is not a recording).
TREES = (STATE, RESULTS, REVIEWS)

#: The push ledger (``qcflow.ledger``).
PUSH = f"{STATE}push/"
PUSH_RECORDS = f"{PUSH}records/"
PUSH_FAILED = f"{PUSH}failed/"
PUSH_UNKNOWN_TASK = f"{PUSH}unknown-task/"
#: One marker per claimed generation, dropped when it settles: what FC gave up on stays findable.
PUSH_OPEN = f"{PUSH}open/"
#: Pushes by ContactId have a ledger id of their own: the object path must know to look first.
PUSH_BY_CONTACT = f"{PUSH}by-contact/"

#: Harvest state (``qcflow.harvest.state``) and the writer's records (``qcflow.harvest.output``).
HARVEST = f"{STATE}harvest/"
HARVEST_LEASE = f"{HARVEST}lease/"
HARVEST_BACKFILL_LEASE = f"{HARVEST}backfill-lease/"
HARVEST_CHECKPOINT = f"{HARVEST}checkpoint/"
HARVEST_UNFINISHED = f"{HARVEST}unfinished/"
HARVEST_STUCK = f"{HARVEST}stuck/"
HARVEST_COMMITS = f"{HARVEST}commits/"
HARVEST_PENDING = f"{HARVEST}pending/"
HARVEST_MANIFESTS = f"{HARVEST}manifests/"

#: The review feed's state (``qcflow.harvest.reviews``) and its writer's records.
REVIEW_STATE = f"{STATE}reviews/"
REVIEW_CHECKPOINT = f"{REVIEW_STATE}checkpoint/"
REVIEW_BACKFILL_LEASE = f"{REVIEW_STATE}backfill-lease/"
REVIEW_COMMITS = f"{REVIEW_STATE}commits/"
REVIEW_PENDING = f"{REVIEW_STATE}pending/"
