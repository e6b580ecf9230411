"""Issue 25's must-show: a callback flood through the real callback handler cannot slow the harvest.

Against sandboxes in their own processes at the real GetResult quota (1000 / 60 s), with the
real ``functions/harvest`` and four ``functions/callback`` instances, those in a process of their
own as FC runs them (``benchmarks/callback_flood.py`` runs the same scenarios, larger, for
``benchmarks/RESULTS.md``):

- 1,000 well-signed callbacks without the token (a wrong one, or none) → 0 GetResult calls,
  and a concurrent harvest pass takes as long as alone (ratio ≤ 1.1);
- 1,000 callbacks *with* the token for random taskIds → each instance's bucket lets a few
  through, the rest answer 503, and the pass still ends within its budget, every result written,
  nothing throttled.
"""

from __future__ import annotations

import pytest
from benchmarks.callback_flood import run

RESULTS = 10_000
CALLBACKS = 1_000
BUDGET = 60.0


@pytest.fixture(scope="module")
def flood() -> dict:
    return run(RESULTS, CALLBACKS, BUDGET)


def test_forged_callbacks_cost_no_get_result_and_do_not_slow_the_harvest(flood: dict) -> None:
    base, forged = flood["baseline"], flood["forged"]
    assert forged["statuses"] == {404: CALLBACKS}, f"every callback without the token is a 404: {forged}"
    assert forged["callback_get_results"] == 0 and forged["get_results"] == forged["calls"], forged
    assert base["written"] == forged["written"] == RESULTS, (base, forged)
    # the pass is paced by its limiter, so the ratio is about CPU: a machine loaded by other work can
    # push it up (the benchmark, benchmarks/callback_flood.py, measured 1.009 at 20,000 results)
    assert flood["forged_ratio"] <= 1.1, (base, forged)


def test_a_valid_token_flood_leaves_the_harvest_within_its_budget(flood: dict) -> None:
    valid = flood["valid"]
    assert sum(valid["statuses"].values()) == CALLBACKS and set(valid["statuses"]) <= {200, 503}
    assert valid["statuses"].get(503, 0) > CALLBACKS / 2, "most are deferred by the buckets"
    assert not valid["stopped_by_deadline"] and valid["written"] == RESULTS
    assert valid["seconds"] < BUDGET and valid["throttled"] == 0
    # the buckets: the callbacks' share (10 % of 16.2/s) over the pass, plus each instance's burst of 3
    allowed = 0.1 * 1000 * 0.97 / 60 * valid["seconds"] + 4 * 3 + 1
    assert 0 < valid["callback_get_results"] <= allowed
