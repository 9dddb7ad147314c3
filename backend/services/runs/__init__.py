"""Training runs, at their seams: launch (a form checked in one pass, stored and queued; its
description; clone), live (the runs table and a run's progress as it trains), compare
(settings side by side, seeds averaged) and files (downloads, salience). Where a run's files
are stored is here, for all of them and for the worker.

Every change of a run's state (dispatch, cancel, retry, the worker's claim, reports and
finish, recovery) is in backend/services/run_lifecycle.py; the API only enqueues by task name.
"""

from __future__ import annotations


def run_out_key(run_id: int) -> str:
    """Where a run's results live in the store: checkpoints, metrics.json, salience."""
    return f"runs/{run_id}/out"


def run_data_key(run_id: int) -> str:
    """Where a run's dataset export lives in the store (written once, by the first worker)."""
    return f"runs/{run_id}/data"
