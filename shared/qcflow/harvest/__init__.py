"""The harvest: every finished SCA inspection lands in the store as JSONL, exactly once.

``run_harvest`` is one timer pass (or a backfill of a range), ``harvest_task_ids`` the
callback fast path. Inside: ``reader`` (GetResult windows at the quota ceiling), ``fields``
(the fields every read asks for), ``records`` (the JSONL schema), ``output`` (the
exactly-once writer), ``state`` (lease, checkpoint, unfinished markers), ``feed`` (what a
feed hands the pipeline), ``pipeline`` (windows → pages → records → writer, shared by the
feeds), ``unfinished`` (running results remembered, polled, reported stuck), ``recovery``
(parts lost by a crashed writer), ``join`` (taskIds told to the push ledger), ``run`` (the
coordination: lease, phases, checkpoint, manifest). Free of Function Compute details:
handlers pass a deadline and call these.
"""

from __future__ import annotations

from qcflow.harvest.run import HarvestProgress, HarvestReport, harvest_task_ids, run_harvest

__all__ = ["HarvestProgress", "HarvestReport", "harvest_task_ids", "run_harvest"]
