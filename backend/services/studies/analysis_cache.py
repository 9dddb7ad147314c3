"""A study's analysis, computed when answers arrive and read by the results page.

The fits (psignifit per run and per participant, thousands of participant resamples) take
seconds to a minute, so a page load never computes them: it reads the last analysis, stored
as JSON in the file store (`studies/<id>/analysis.json`), with the answer and completion
counts it was computed from. A refresh runs in one background thread of the API process:

- every `REFRESH_EVERY` stored answers of a study, and whenever a session completes (that is
  when exclusions are decided), `ANSWER_DELAY_S` later, so that a burst of answers makes one
  refresh, not many;
- when the results page finds the stored analysis behind the answers (say the process that
  would have refreshed it stopped), at once, in the background: the page shows the stored
  analysis and says that a newer one is on its way.

Refreshes of one study never overlap; BLAS and OpenMP pools are held to one thread while
fitting (`threadpoolctl`), so a refresh takes one core and leaves the rest to requests.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.storage import Storage, get_storage
from backend.models import ParticipantSession, Response, Study, StudyRun, Trial

_logger = logging.getLogger(__name__)

REFRESH_EVERY = 20  # answers between two refreshes while participants are answering
ANSWER_DELAY_S = 3.0  # how long a refresh waits after the answer that asked for it


def cache_key(study_id: int) -> str:
    return f"studies/{study_id}/analysis.json"


def live_counts(db: Session, study_id: int) -> dict[str, int]:
    """What changes the analysis, counted now (three COUNT queries): stored answers,
    completed sessions, and sessions that consented."""
    answers = db.scalar(
        select(func.count())
        .select_from(Response)
        .join(Trial, Trial.id == Response.trial_id)
        .join(ParticipantSession, ParticipantSession.id == Trial.session_id)
        .where(ParticipantSession.study_id == study_id)
    )
    sessions = db.execute(
        select(func.count(), func.count(ParticipantSession.completed_at)).where(
            ParticipantSession.study_id == study_id, ParticipantSession.condition_index >= 0
        )
    ).one()
    return {"answers": answers or 0, "completed": sessions[1] or 0, "total": sessions[0] or 0}


def read(storage: Storage, study_id: int) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(storage.get_bytes(cache_key(study_id)))
    except (FileNotFoundError, KeyError, ValueError):
        return None
    return data


def refresh(study_id: int) -> dict[str, Any] | None:
    """Compute the study's analysis now and store it (what the background thread runs; tests
    and the benchmark call it directly). None when the study no longer exists."""
    from threadpoolctl import threadpool_limits

    from backend.db import get_sessionmaker
    from backend.services.studies import analysis

    started = time.perf_counter()
    inputs = None
    with get_sessionmaker()() as db:
        study = db.get(Study, study_id)
        if study is None:
            return None
        counts = live_counts(db, study_id)
        if study.design == "label":
            res = analysis.results(db, study)
        else:
            # read everything, then end the transaction before fitting: a long-open reading
            # transaction would hold its table locks for the whole fit
            inputs = analysis.load_inputs(db, study)
    if inputs is not None:
        with threadpool_limits(limits=1):
            res = analysis.results_from(inputs)
    seconds = time.perf_counter() - started
    res["analysis"] = {
        "answers": counts["answers"],
        "completed": counts["completed"],
        "computed_at": datetime.now(UTC).isoformat(),
        "seconds": round(seconds, 3),
    }
    get_storage().put_bytes(cache_key(study_id), json.dumps(res).encode())
    return res


class _Refresher:
    """One daemon thread per process that refreshes studies' analyses in the background:
    each study at most once at a time, requests for a study already waiting merged."""

    def __init__(self) -> None:
        self._due: dict[int, float] = {}  # study id -> monotonic time it may start
        self._running: int | None = None
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, study_id: int, delay: float = 0.0) -> None:
        with self._cv:
            due = time.monotonic() + delay
            self._due[study_id] = min(self._due.get(study_id, due), due)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="study-analysis", daemon=True
                )
                self._thread.start()
            self._cv.notify_all()

    def pending(self, study_id: int) -> bool:
        """Whether a refresh of this study is waiting or running."""
        with self._cv:
            return study_id in self._due or self._running == study_id

    def waiting(self, study_id: int) -> bool:
        """Whether a refresh of this study is waiting to start (one that is running may
        have read the answers before the latest ones)."""
        with self._cv:
            return study_id in self._due

    def _loop(self) -> None:
        while True:
            with self._cv:
                while True:
                    now = time.monotonic()
                    ready = [s for s, t in self._due.items() if t <= now]
                    if ready:
                        study_id = min(ready, key=lambda s: self._due[s])
                        del self._due[study_id]
                        self._running = study_id
                        break
                    wait = min(self._due.values(), default=now + 60) - now
                    self._cv.wait(timeout=max(0.01, wait))
            try:
                refresh(study_id)
            except Exception:  # one study's failure must not stop the thread
                _logger.exception("the analysis of study %s failed", study_id)
            finally:
                with self._cv:
                    self._running = None
                    self._cv.notify_all()

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Run what is waiting now and return once nothing is waiting or running (tests)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            for s in self._due:
                self._due[s] = 0.0
            self._cv.notify_all()
            while self._due or self._running is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(timeout=left)
        return True


_refresher = _Refresher()
schedule = _refresher.schedule
wait_idle = _refresher.wait_idle


def answer_stored(db: Session, study_id: int, *, completed: bool = False) -> None:
    """Called after an answer (or a completion) is committed: schedule a refresh every
    REFRESH_EVERY answers and at every completion."""
    if completed:
        schedule(study_id, ANSWER_DELAY_S)
        return
    n = live_counts(db, study_id)["answers"]
    if n % REFRESH_EVERY == 0:
        schedule(study_id, ANSWER_DELAY_S)


def run_threshold_results(db: Session, storage: Storage, run_id: int) -> list[dict[str, Any]]:
    """The run's robust accuracy at people's detection threshold from every detection study
    that covers it, as each study's stored analysis has it (comparison.model_at_threshold;
    nothing is computed here), with the study's name and how many participants it counts."""
    studies = db.scalars(
        select(Study)
        .join(StudyRun, StudyRun.study_id == Study.id)
        .where(StudyRun.run_id == run_id, Study.design.in_(("2afc", "yesno")))
        .order_by(Study.id)
    )
    out = []
    for study in studies:
        stored = read(storage, study.id)
        for run in (stored or {}).get("runs", []):
            at = run.get("model_at_threshold") if run.get("run_id") == run_id else None
            if at:
                out.append(
                    {
                        "study_id": study.id,
                        "study_name": study.name,
                        "design": study.design,
                        "participants": (stored or {}).get("participants", {}).get("included"),
                        "computed_at": (stored or {}).get("analysis", {}).get("computed_at"),
                        **at,
                    }
                )
    return out


def cached_results(db: Session, storage: Storage, study: Study) -> dict[str, Any]:
    """What the results page shows: the stored analysis, the participant counts as they are
    now, and whether the analysis is current. A stored analysis behind the answers schedules
    a refresh in the background; nothing is computed here."""
    counts = live_counts(db, study.id)
    stored = read(storage, study.id)
    current = (
        stored is not None
        and stored["analysis"]["answers"] == counts["answers"]
        and stored["analysis"]["completed"] == counts["completed"]
    )
    if not current and not _refresher.waiting(study.id):
        schedule(study.id)  # after the running one, if one is: it may be behind these answers
    base: dict[str, Any] = stored or {
        "study_id": study.id,
        "design": study.design,
        "excluded": [],
        "runs": [],
        "analysis": {"answers": 0, "completed": 0, "computed_at": None, "seconds": None},
    }
    included = (stored or {}).get("participants", {}).get("included")
    base["participants"] = {
        "total": counts["total"],
        "completed": counts["completed"],
        "included": included if stored is not None else None,
    }
    base["analysis"] = {
        **base["analysis"],
        "state": "current" if current else ("updating" if stored else "computing"),
        "answers_now": counts["answers"],
        "completed_now": counts["completed"],
    }
    return base
