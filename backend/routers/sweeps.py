"""Sweeps: launch (with a preview of its runs and time first), list, and a sweep's table with
its exports."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from backend.core.openapi import content
from backend.deps import PathId, ResearcherUser, SessionDep
from backend.schemas.sweeps import (
    SweepCreate,
    SweepDetail,
    SweepPreview,
    SweepPublic,
    SweepsPublic,
)
from backend.services.runs import sweeps

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

# the equivalence margin, in points of accuracy
Margin = Annotated[float | None, Query(gt=0, le=100)]


@router.post("", response_model=SweepPublic, status_code=201)
def launch_sweep(body: SweepCreate, user: ResearcherUser, db: SessionDep) -> SweepPublic:
    """Launch a sweep: one run per arm and seed, a few at a time; every bad field is named."""
    return SweepPublic.model_validate(sweeps.create_sweep(db, user.id, body))


@router.post("/preview", response_model=SweepPreview)
def preview_sweep(body: SweepCreate, _: ResearcherUser, db: SessionDep) -> SweepPreview:
    """What a sweep would launch: its runs, arms and estimated training time; nothing stored."""
    return SweepPreview(**sweeps.preview(db, body))


@router.get("", response_model=SweepsPublic)
def list_sweeps(_: ResearcherUser, db: SessionDep) -> SweepsPublic:
    """The latest sweeps, newest first."""
    found = sweeps.list_sweeps(db)
    return SweepsPublic(data=[SweepPublic.model_validate(s) for s in found], count=len(found))


@router.get("/{sweep_id}", response_model=SweepDetail)
def get_sweep(
    sweep_id: PathId, _: ResearcherUser, db: SessionDep, margin: Margin = None
) -> SweepDetail:
    """A sweep's table: each arm's mean and 95 % interval over seeds, paired differences
    against the baseline with the equivalence verdict at `margin` points, every run."""
    sweep = sweeps.get_sweep(db, sweep_id)
    table, names = sweeps.sweep_table(db, sweep, margin)
    finished = all(a["pending"] == 0 for a in table["arms"])
    return SweepDetail(
        sweep=SweepPublic.model_validate(sweep), table=table, run_names=names, finished=finished
    )


@router.get(
    "/{sweep_id}/export",
    responses=content("text/csv", "application/json", description="The sweep's figures."),
)
def export_sweep(
    sweep_id: PathId,
    _: ResearcherUser,
    db: SessionDep,
    format: Literal["csv", "json"] = "csv",  # noqa: A002 - the query parameter's name
    level: Literal["runs", "arms"] = "arms",
    margin: Margin = None,
) -> Response:
    """The sweep's per-run or per-arm figures as CSV, or the whole table as JSON."""
    sweep = sweeps.get_sweep(db, sweep_id)
    table, _names = sweeps.sweep_table(db, sweep, margin)
    name = f"sweep-{sweep.id}-{level}"
    if format == "json":
        return Response(
            json.dumps(table, indent=1),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="sweep-{sweep.id}.json"'},
        )
    return Response(
        sweeps.export_csv(table, level),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


ROUTERS = [router]
