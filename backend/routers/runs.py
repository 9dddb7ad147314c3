"""Training runs: launch, list, watch, cancel, retry, clone, download, compare."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.openapi import PNG, content
from backend.core.storage import serve
from backend.db import get_sessionmaker
from backend.deps import (
    DB_INT_MAX,
    QueryId,
    ResearcherUser,
    RunDep,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from backend.models import TrainingRun
from backend.schemas.runs import (
    RunBatchPublic,
    RunClone,
    RunCompare,
    RunCreate,
    RunDetail,
    RunEvent,
    RunEvents,
    RunGroups,
    RunPublic,
    RunSalience,
    RunsPublic,
)
from backend.schemas.work_queue import QueuePlace
from backend.services import run_lifecycle as lifecycle
from backend.services import work_queue
from backend.services.runs import compare, files, launch, live, run_out_key
from backend.services.runs.beside import figures_beside

router = APIRouter(prefix="/runs", tags=["runs"])

SALIENCE_FILE = re.compile(r"^[a-z0-9_\-]{1,80}\.png$")
# The event stream reads the database this often, says it is alive this often (a comment
# line), and after this long asks the page to open a new one (event "reconnect": short, so
# that an abandoned stream a proxy failed to close ends soon).
EVENTS_POLL_S = 0.5
EVENTS_KEEPALIVE_S = 15.0
EVENTS_MAX_S = 30.0


def _public(db: Session, runs: list[TrainingRun]) -> list[RunPublic]:
    names = live.dataset_names(db, runs)
    out = []
    for r in runs:
        item = RunPublic.model_validate(r)
        item.dataset_name = names.get(r.dataset_id, "")
        out.append(item)
    return out


def _ids(ids: str) -> list[int]:
    try:
        parsed = [int(x) for x in ids.split(",") if x.strip()]
    except ValueError:
        raise HTTPException(422, detail="ids must be a comma-separated list of run ids.") from None
    if not parsed:
        raise HTTPException(422, detail="Give at least one run id.")
    return list(dict.fromkeys(parsed))


@router.post("", response_model=RunsPublic, status_code=201)
def launch_runs(
    body: RunCreate, user: ResearcherUser, db: SessionDep, cloned_from: QueryId = None
) -> RunsPublic:
    """Launch a run (one per seed, grouped) from the form; every bad field is named."""
    runs = launch.create_runs(db, user.id, body.model_dump(), cloned_from_id=cloned_from)
    return RunsPublic(data=_public(db, runs), count=len(runs))


@router.get("", response_model=RunsPublic)
def list_runs(
    _: ResearcherUser,
    db: SessionDep,
    dataset_id: QueryId = None,
    method: str | None = None,
    state: str | None = None,
    tag: str | None = None,
    group_key: str | None = None,
    sort: Annotated[str, Query(pattern=r"^-?[a-z_]+$")] = "-created_at",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
) -> RunsPublic:
    """Runs filtered by dataset / method / state / tag, sorted."""
    runs, count = live.list_runs(
        db,
        dataset_id=dataset_id,
        method=method,
        state=state,
        tag=tag,
        group_key=group_key,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    return RunsPublic(data=_public(db, runs), count=count)


@router.get("/defaults")
def launch_defaults(_: ResearcherUser) -> dict[str, Any]:
    """The launch form: defaults, choices, and every setting with its unit, bounds and methods."""
    return launch.form_description()


@router.get("/compare", response_model=RunCompare)
def compare_runs(_: ResearcherUser, db: SessionDep, ids: str) -> RunCompare:
    """Several runs side by side: config differences, epoch curves, robust accuracy against eps."""
    runs = compare.runs_by_ids(db, _ids(ids))
    differences, same = compare.config_diff(runs)
    return RunCompare(
        runs=_public(db, runs),
        differences=differences,
        same=same,
        curves={str(r.id): [e.metrics for e in r.epochs] for r in runs},
        robust_vs_eps={str(r.id): compare.robust_vs_eps(r) for r in runs},
    )


@router.get("/groups", response_model=RunGroups)
def group_runs(
    _: ResearcherUser,
    db: SessionDep,
    by: Annotated[str, Query(pattern=r"^[a-z_]+$")] = "group_key",
    ids: str | None = None,
    dataset_id: QueryId = None,
    tag: str | None = None,
    baseline: Annotated[str | None, Query(max_length=200)] = None,
    margin: Annotated[float | None, Query(gt=0, le=100)] = None,
) -> RunGroups:
    """Finished runs grouped by one setting: mean +- std and 95 % interval across seeds, and
    each group minus the `baseline` group paired by seed, with the verdict at `margin` points."""
    if ids:
        runs = compare.runs_by_ids(db, _ids(ids))
    else:
        runs, _count = live.list_runs(db, dataset_id=dataset_id, tag=tag, limit=None)
    held = figures_beside(db, [r.id for r in runs if r.state == "succeeded"])
    return RunGroups(by=by, groups=compare.group_runs(runs, by, baseline, margin, held))


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run: RunDep, db: SessionDep, storage: StorageDep, settings: SettingsDep) -> RunDetail:
    """One run: config, reproducibility record, epochs, final metrics, log tail, time left,
    and while it waits its place in the queue."""
    detail = RunDetail.model_validate(run)
    detail.dataset_name = live.dataset_names(db, [run]).get(run.dataset_id, "")
    detail.batches = [
        RunBatchPublic.model_validate(p) for p in live.thinned(live.batch_rows(db, run.id))
    ]
    detail.batches_per_epoch = live.batches_per_epoch(run)
    detail.system = live.system_figures(run)
    detail.time_left_s = live.time_left_s(run, live.pace_points(db, run))
    place = work_queue.run_place(db, settings, run)
    detail.queue = QueuePlace(**place) if place else None
    out = run_out_key(run.id)
    detail.downloads = {
        name: f"/api/runs/{run.id}/files/{name}"
        for name in files.DOWNLOADS
        if storage.exists(f"{out}/{name}")
    }
    return detail


def _place(db: Session, run: TrainingRun) -> dict[str, Any] | None:
    return work_queue.run_place(db, get_settings(), run)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _event_stream(run_id: int, cursor: live.LiveCursor) -> AsyncIterator[str]:
    sessions = get_sessionmaker()
    opened = last_sent = time.monotonic()
    # Starlette cancels this generator when the client disconnects; each poll reads in a
    # session of its own, closed before the sleep
    while True:
        events, finished = await run_in_threadpool(
            live.live_events, sessions, run_id, cursor, _place
        )
        for name, data in events:
            yield _sse(name, data)
        now = time.monotonic()
        if events:
            last_sent = now
        if finished:
            return
        if now - opened > EVENTS_MAX_S:
            yield _sse("reconnect", {"after_step": cursor.after_step})
            return
        if now - last_sent > EVENTS_KEEPALIVE_S:
            yield ": alive\n\n"
            last_sent = now
        await asyncio.sleep(EVENTS_POLL_S)


@router.get(
    "/{run_id}/events",
    response_model=RunEvents,
    responses={
        200: {
            "description": (
                "With `Accept: text/event-stream` (as EventSource sends): server-sent events "
                "until the run has finished: `run` (state, progress, time left, system figures, "
                "work, a queued run's place in the queue), "
                "`log` (the log tail), `epoch` (new epochs), `batch` (new per-batch points), then "
                "`end`; `reconnect` asks for a new stream after 30 s. Otherwise the same events "
                "as they stand now, as JSON."
            ),
            "content": {"text/event-stream": {}},
        }
    },
)
def run_events(
    run: RunDep,
    db: SessionDep,
    request: Request,
    after_step: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
    after_epoch: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
) -> StreamingResponse | RunEvents:
    """The run's live progress pushed as server-sent events, from the given step and epoch."""
    run_id = run.id
    db.close()  # the login check's session: no transaction stays open while streaming
    cursor = live.LiveCursor(after_step=after_step, after_epoch=after_epoch)
    if "text/event-stream" not in request.headers.get("accept", ""):
        events, finished = live.live_events(get_sessionmaker(), run_id, cursor, _place)
        return RunEvents(
            events=[RunEvent(event=name, data=data) for name, data in events], finished=finished
        )
    return StreamingResponse(
        _event_stream(run_id, cursor),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/{run_id}/cancel", response_model=RunPublic)
def cancel_run(run: RunDep, db: SessionDep) -> RunPublic:
    """Cancel: a queued run before it starts, a running one within one batch."""
    run = lifecycle.cancel_run(db, run)
    return _public(db, [run])[0]


@router.post("/{run_id}/retry", response_model=RunPublic)
def retry_run(run: RunDep, db: SessionDep) -> RunPublic:
    """Queue a failed or cancelled run again; it resumes from its last checkpoint."""
    run = lifecycle.retry_run(db, run)
    return _public(db, [run])[0]


@router.get("/{run_id}/clone", response_model=RunClone)
def clone_run(run: RunDep) -> RunClone:
    """The launch form filled with this run's settings."""
    return RunClone(cloned_from_id=run.id, form=launch.clone_form(run))


@router.get(
    "/{run_id}/files/{name}",
    responses=content(
        "application/octet-stream", "application/json", description="final.pt or metrics.json."
    ),
)
def download_file(run: RunDep, name: str, storage: StorageDep) -> Response:
    """Download the run's final checkpoint (final.pt) or its metrics (metrics.json)."""
    key = f"{run_out_key(run.id)}/{name}"
    if name not in files.DOWNLOADS or not storage.exists(key):
        raise HTTPException(404, detail="File not found.")
    return serve(storage, key, files.DOWNLOADS[name], filename=f"run-{run.id}-{name}")


@router.get("/{run_id}/salience", response_model=RunSalience)
def run_salience(run: RunDep, storage: StorageDep) -> dict[str, Any]:
    """The run's own salience maps beside the human masks on sample images, and agreement."""
    return files.salience_summary(run, storage)


@router.get("/{run_id}/salience/{name}", responses=PNG)
def salience_image(run: RunDep, name: str, storage: StorageDep) -> Response:
    """One PNG of the salience samples (image, model map or human mask)."""
    key = f"{run_out_key(run.id)}/salience/{name}"
    if not SALIENCE_FILE.match(name) or not storage.exists(key):
        raise HTTPException(404, detail="File not found.")
    return serve(storage, key, "image/png")


ROUTERS = [router]
