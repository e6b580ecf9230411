"""The harvest: every finished SCA inspection lands in the store as JSONL, exactly once.

``run_harvest`` is one timer pass (or a backfill of a range), ``harvest_task_ids`` the
callback fast path. Inside: ``reader`` (GetResult windows at the quota ceiling),
``records`` (the JSONL schema), ``output`` (the exactly-once writer), ``state`` (lease,
checkpoint, unfinished tasks), ``run`` (the orchestration). Free of Function Compute
details: handlers pass a deadline and call these.
"""

from __future__ import annotations

from qcflow.harvest.run import HarvestProgress, HarvestReport, harvest_task_ids, run_harvest

__all__ = ["HarvestProgress", "HarvestReport", "harvest_task_ids", "run_harvest"]
