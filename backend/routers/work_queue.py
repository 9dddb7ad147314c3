"""The queue of background work: runs, inequality evaluations and stimulus jobs, in order,
with the listening workers and their GPUs."""

from __future__ import annotations

from fastapi import APIRouter

from backend.deps import ResearcherUser, SessionDep, SettingsDep
from backend.schemas.work_queue import QueuePublic
from backend.services import work_queue

router = APIRouter(prefix="/queue", tags=["queue"])


@router.get("", response_model=QueuePublic)
def get_queue(_: ResearcherUser, db: SessionDep, settings: SettingsDep) -> QueuePublic:
    """Work running and waiting, in the order the workers take it, with estimated starts."""
    return QueuePublic(**work_queue.build(db, settings).public())


ROUTERS = [router]
