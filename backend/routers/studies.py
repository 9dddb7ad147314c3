"""Perception studies, the researcher's side: design, stimulus generation, open/close, results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.openapi import PNG, content
from backend.deps import (
    DB_INT_MAX,
    PathId,
    ResearcherUser,
    SessionDep,
    SettingsDep,
    StorageDep,
    StudyDep,
)
from backend.models import Study
from backend.schemas.studies import (
    DeviceCheck,
    DeviceInfo,
    ParticipantPreview,
    SourceRunsPublic,
    StimuliPreviewPublic,
    StimulusPurpose,
    StudiesPublic,
    StudyCreate,
    StudyDetail,
    StudyPublic,
)
from backend.schemas.work_queue import QueuePlace
from backend.services import study_lifecycle, work_queue
from backend.services.studies import analysis, analysis_cache, design, participation, preview

router = APIRouter(prefix="/studies", tags=["studies"])


def _public(db: Session, studies: list[Study], detail: bool = False) -> list[StudyPublic]:
    counts = design.study_counts(db, [s.id for s in studies])
    out: list[StudyPublic] = []
    for s in studies:
        cls = StudyDetail if detail else StudyPublic
        item = cls.model_validate(s)
        for k, v in counts[s.id].items():
            setattr(item, k, v)
        if isinstance(item, StudyDetail):
            item.link_path = f"/s/{s.link_token}"
        out.append(item)
    return out


@router.get("", response_model=StudiesPublic)
def list_studies(_: ResearcherUser, db: SessionDep) -> StudiesPublic:
    """All studies, newest first."""
    studies = list(db.scalars(select(Study).order_by(Study.id.desc())))
    return StudiesPublic(data=_public(db, studies), count=len(studies))


@router.get("/source-runs", response_model=SourceRunsPublic)
def list_source_runs(_: ResearcherUser, db: SessionDep) -> SourceRunsPublic:
    """Finished training runs whose checkpoints can make stimuli."""
    runs = preview.source_runs(db)
    return SourceRunsPublic(data=runs, count=len(runs))


@router.post("", response_model=StudyDetail, status_code=201)
def create_study(body: StudyCreate, user: ResearcherUser, db: SessionDep) -> StudyPublic:
    """Create a draft study (design fixed, stimuli not yet made)."""
    study = design.create_study(db, body, user)
    return _public(db, [study], detail=True)[0]


def _detail(db: Session, settings: Settings, study: Study) -> StudyPublic:
    detail = _public(db, [study], detail=True)[0]
    place = work_queue.study_place(db, settings, study)
    if isinstance(detail, StudyDetail) and place is not None:
        detail.queue = QueuePlace(**place)
    return detail


@router.get("/{study_id}", response_model=StudyDetail)
def get_study_detail(study: StudyDep, db: SessionDep, settings: SettingsDep) -> StudyPublic:
    """One study with its configuration, progress and participant link, and while its
    stimulus job waits for a worker its place in the queue."""
    return _detail(db, settings, study)


@router.post("/{study_id}/generate", response_model=StudyDetail)
def generate(study: StudyDep, db: SessionDep, settings: SettingsDep) -> StudyPublic:
    """Start making the stimuli (a Celery task; progress in the study)."""
    study_lifecycle.start_generation(db, study)
    return _detail(db, settings, study)


@router.post("/{study_id}/open", response_model=StudyDetail)
def open_study(study: StudyDep, db: SessionDep) -> StudyPublic:
    """Let participants in through the link."""
    study_lifecycle.open_study(db, study)
    return _public(db, [study], detail=True)[0]


@router.post("/{study_id}/close", response_model=StudyDetail)
def close_study(study: StudyDep, db: SessionDep) -> StudyPublic:
    """Stop admitting new participants (started sessions may finish)."""
    study_lifecycle.close_study(db, study)
    return _public(db, [study], detail=True)[0]


@router.get("/{study_id}/results")
def study_results(study: StudyDep, db: SessionDep, storage: StorageDep) -> dict[str, Any]:
    """Detection per run and epsilon with intervals over participants, psignifit fits and
    thresholds, exclusions, the model's AutoAttack and PGD accuracy at the study's epsilons
    and at people's threshold (`runs[].model_at_threshold`), and every pair of runs compared
    over the participants who saw both (`comparisons`): the analysis last computed in the
    background (`analysis.state` says whether it is current; a stale one is being
    refreshed)."""
    return analysis_cache.cached_results(db, storage, study)


@router.get(
    "/{study_id}/trials.csv",
    responses=content("text/csv", description="One CSV row per trial."),
)
def trials_csv(study: StudyDep, db: SessionDep) -> Response:
    """Every trial as one CSV row (tidy): participant, stimulus, run, epsilon, answer, timing."""
    return Response(
        analysis.trials_csv(db, study),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="study-{study.id}-trials.csv"'},
    )


@router.get("/{study_id}/trials.json")
def trials_json(study: StudyDep, db: SessionDep) -> dict[str, Any]:
    """Every trial as one object: the CSV's facts, and in a QUEST+ study the run's posterior
    summary once the trial's answer was counted (`posterior`)."""
    return analysis.trials_json(db, study)


@router.get("/{study_id}/stimuli", response_model=StimuliPreviewPublic)
def preview_stimuli(
    study: StudyDep,
    db: SessionDep,
    storage: StorageDep,
    run_id: Annotated[
        int | None, Query(ge=1, le=DB_INT_MAX, description="only this run's stimuli")
    ] = None,
    epsilon_255: Annotated[
        float | None, Query(ge=0, le=255, description="only this epsilon, in grey levels")
    ] = None,
    epsilon: Annotated[
        float | None, Query(ge=0, le=1, description="only this epsilon, in pixel units")
    ] = None,
    purpose: Annotated[StimulusPurpose | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
) -> dict[str, Any]:
    """A page of the study's stimuli with the measured L-inf distance to their source image
    (grey levels), for checking budgets before the study opens. Researchers only."""
    if epsilon is not None:
        if epsilon_255 is not None and abs(epsilon * 255 - epsilon_255) > 1e-4:
            raise HTTPException(
                400, detail="Give epsilon or epsilon_255, or two that name the same value."
            )
        epsilon_255 = epsilon * 255
    return preview.preview_stimuli(
        db,
        storage,
        study,
        run_id=run_id,
        eps_255=epsilon_255,
        purpose=purpose,
        limit=limit,
        offset=offset,
    )


@router.get("/{study_id}/stimuli/{stimulus_id}/image", responses=PNG)
def stimulus_image(
    study: StudyDep, stimulus_id: PathId, db: SessionDep, storage: StorageDep
) -> Response:
    """The stored PNG of one stimulus, byte for byte. Stimuli are stored as the uncompressed
    PNG participants are sent (those made before that encoding keep their compressed file
    here; participants get its pixels re-encoded). Researchers only: participants see stimuli
    only through per-session ids."""
    data = preview.stimulus_file(db, storage, study, stimulus_id)
    return Response(
        data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )


@router.get("/{study_id}/preview-session", response_model=ParticipantPreview)
def participant_preview(
    study: StudyDep,
    db: SessionDep,
    condition_index: Annotated[
        int, Query(ge=0, le=DB_INT_MAX, description="the participant slot to preview")
    ] = 0,
) -> dict[str, Any]:
    """The whole participant flow (texts, example, every trial of one participant slot) for
    the researcher to try; nothing is stored and no participant is counted. 409 before the
    stimuli are made."""
    return preview.participant_preview(db, study, condition_index)


@router.post("/{study_id}/preview-device", response_model=DeviceCheck)
def preview_device(study: StudyDep, body: DeviceInfo) -> dict[str, Any]:
    """The participant's device check for the researcher's preview: the same rules, nothing
    stored."""
    problems = participation.device_problems(study, body.model_dump())
    return {"ok": not problems, "problems": problems, "stage": "preview"}


ROUTERS = [router]
