"""API schemas of perception studies: the researcher's side and the participant's side.

Participant schemas never carry an epsilon, a run, a side or a correct answer: the browser
answers by opaque ids only (tests/backend/test_study_participate.py scans every response).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from backend.schemas.common import DbId, ORMModel
from backend.schemas.work_queue import QueuePlace

# the sessions a study's link admits when its researcher names no number
DEFAULT_MAX_SESSIONS = 100

MAX_EPS_255 = 64.0


class AttackConfig(BaseModel):
    # only L-inf PGD for now
    name: Literal["pgd-linf"] = "pgd-linf"
    # PGD iterations
    steps: int = Field(default=20, ge=1, le=500)
    # step size as a fraction of each stimulus's epsilon (alpha = alpha_ratio * eps)
    alpha_ratio: float = Field(default=0.25, gt=0, le=2)
    # uniform random start inside the budget (seeded per stimulus)
    random_start: bool = True


class ExclusionRules(BaseModel):
    # a participant whose catch-trial accuracy is below this is excluded (0..1)
    min_catch_accuracy: float = Field(default=0.75, ge=0, le=1)
    # answers faster than this many milliseconds count as "too fast"
    too_fast_ms: float = Field(default=200, ge=0, le=10_000)
    # a participant with more than this share of too-fast main answers is excluded (0..1)
    max_too_fast_fraction: float = Field(default=0.1, ge=0, le=1)
    # exclude a participant who gave the same answer on every main trial
    same_answer_throughout: bool = True


class QuestSettings(BaseModel):
    """QUEST+ placement (the `questplus` package): per participant and run, the next epsilon is
    chosen on the server after each stored answer, from a ladder of log-spaced levels whose
    stimuli are all made in advance (backend/services/studies/adaptive.py)."""

    # the ladder: `levels` epsilons log-spaced from ladder_min_255 to ladder_max_255 grey levels
    levels: int = Field(default=25, ge=20, le=30)
    ladder_min_255: float = Field(default=0.5, gt=0, le=MAX_EPS_255)
    ladder_max_255: float = Field(default=24.0, gt=0, le=MAX_EPS_255)
    # the stopping rule: at most this many trials per run (the sequence is made this long) ...
    max_trials: int = Field(default=40, ge=2, le=400)
    # ... and, when given, a run stops once the threshold's 95 % posterior interval spans at
    # most this ratio (high / low), after at least min_trials of its trials
    stop_ci_ratio: float | None = Field(default=None, gt=1, le=100)
    min_trials: int = Field(default=10, ge=1, le=400)

    @model_validator(mode="after")
    def _ladder(self) -> QuestSettings:
        if self.ladder_max_255 < 2 * self.ladder_min_255:
            raise ValueError(
                "the ladder must span at least a factor of 2 (ladder_max_255 >= 2 x min)"
            )
        if self.stop_ci_ratio is not None and self.min_trials > self.max_trials:
            raise ValueError("min_trials must not exceed max_trials")
        return self


class StudyTexts(BaseModel):
    consent: str = Field(
        default="This study is part of research on image perception. Taking part is voluntary; "
        "you may stop at any time. We record your answers, response times, screen size and "
        "your Prolific id, and nothing else.",
        max_length=20_000,
    )
    instructions: str = Field(
        default="Some images have been changed by adding a faint pattern. Look closely and "
        "answer as accurately as you can.",
        max_length=20_000,
    )
    debrief: str = Field(
        default="Thank you. The changed images were made by an algorithm that tries to fool "
        "image classifiers with changes people should not notice.",
        max_length=20_000,
    )


class StudyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    design: Literal["2afc", "yesno", "label"] = "2afc"
    # label studies (backend/services/studies/labels.py): this many test images of each class
    # are attacked at every epsilon of the grid (the adversarial images participants name)
    images_per_class: int | None = Field(default=None, ge=1, le=500)
    # finished training runs of one dataset whose checkpoints make the stimuli
    run_ids: list[DbId] = Field(min_length=1, max_length=8)
    # explicit images (any split of the runs' dataset) ...
    image_ids: list[DbId] | None = Field(default=None, max_length=5000)
    # ... or this many random test images, drawn with `seed`
    num_random_images: int | None = Field(default=None, ge=1, le=5000)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    # the epsilon grid in grey levels (8 means 8/255). 0 is no level of the curve: in 2AFC
    # it shows two identical images (a chance check, left out of the fit); yes/no adds its
    # clean trials itself
    epsilons_255: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0], min_length=1, max_length=20
    )
    # how each participant's epsilons are placed: "constant" stimuli (the grid above, each cell
    # equally often) or "quest" (QUEST+ over a dense ladder, 2AFC only; the grid is then the
    # ladder of `quest`)
    placement: Literal["constant", "quest"] = "constant"
    quest: QuestSettings | None = None
    # main trials per run x epsilon cell (yes/no: per perturbed cell; as many clean trials again)
    trials_per_condition: int = Field(default=2, ge=1, le=200)
    # attention checks at a large epsilon, mixed into the main trials
    catch_trials: int = Field(default=2, ge=0, le=100)
    catch_epsilon_255: float = Field(default=32, gt=0, le=MAX_EPS_255)
    # practice trials with feedback before the main trials (also at catch_epsilon_255)
    practice_trials: int = Field(default=2, ge=0, le=50)
    # the model's AutoAttack accuracy beside the people's curve is measured on this many of
    # the main images (the first ones of the seeded pool); 0 measures PGD only. Where the
    # model resists, each epsilon costs Square's 5,000 queries per image on a CPU
    autoattack_images: int = Field(default=32, ge=0, le=1000)
    texts: StudyTexts = Field(default_factory=StudyTexts)
    exclusion: ExclusionRules = Field(default_factory=ExclusionRules)
    # where the participant is sent at the end; "{code}" is replaced by the completion code
    completion_url: str | None = Field(default=None, max_length=2000)
    # the study-wide completion code Prolific gave you; empty = a random code per participant
    completion_code: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]*$")
    # seeds image selection, attack random starts and trial order
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # the most sessions that may consent through the link (each one takes a counterbalancing
    # slot); once reached, new sessions are refused with 409. Always finite (a link anyone
    # can open must not take unlimited sessions): set it to the places you pay for. A
    # returning PROLIFIC_PID gets its own session back (from the browser that started it).
    max_sessions: int = Field(default=DEFAULT_MAX_SESSIONS, ge=1, le=1_000_000)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()

    @field_validator("run_ids")
    @classmethod
    def _distinct_runs(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("must not repeat a run")
        return v

    @field_validator("image_ids")
    @classmethod
    def _distinct_images(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("must not repeat an image")
        return v

    @field_validator("epsilons_255")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        for e in v:
            if not (0 <= e <= MAX_EPS_255):
                raise ValueError(
                    f"every epsilon must be between 0 and {MAX_EPS_255:g} (in /255 units)"
                )
        if len(set(v)) != len(v):
            raise ValueError("must not repeat an epsilon")
        return sorted(v)

    @field_validator("completion_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip()
        if not (v.startswith("https://") or v.startswith("http://")):
            raise ValueError("must start with https:// or http://")
        if "{code}" not in v:
            raise ValueError("must contain the placeholder {code}")
        return v

    @model_validator(mode="after")
    def _images_and_design(self) -> StudyCreate:
        if self.design == "label":  # images drawn per class (backend/services/studies/labels.py)
            if self.images_per_class is None or self.image_ids is not None:
                raise ValueError("a label study takes images_per_class (and no image_ids)")
            if self.placement != "constant" or self.quest is not None:
                raise ValueError("QUEST+ placement is offered for 2AFC studies only")
            return self
        if (self.image_ids is None) == (self.num_random_images is None):
            raise ValueError("give either image_ids or num_random_images, not both and not neither")
        if self.design == "yesno" and not any(e > 0 for e in self.epsilons_255):
            raise ValueError("a yes/no study needs at least one epsilon above 0")
        if self.placement == "quest":
            if self.design != "2afc":
                raise ValueError("QUEST+ placement is offered for 2AFC studies only")
            if self.quest is None:
                self.quest = QuestSettings()
            if self.quest.ladder_max_255 >= self.catch_epsilon_255:
                raise ValueError(
                    "the QUEST+ ladder must end below the catch epsilon (catch_epsilon_255), "
                    "which stays the attention check"
                )
        elif self.quest is not None:
            raise ValueError("quest settings are given only with placement quest")
        return self


class StudyPublic(ORMModel):
    id: int
    name: str
    design: str
    state: str
    progress: float
    error: str | None
    link_token: str
    created_at: datetime
    run_ids: list[int] = []
    # sessions that consented (a session opened but never consented is not counted)
    num_sessions: int = 0
    num_completed: int = 0
    num_stimuli: int = 0


class StudyDetail(StudyPublic):
    config: dict[str, Any]
    # the participant link path (prepend the site's origin and add Prolific's parameters)
    link_path: str = ""
    # while its stimulus job waits for a worker: its place in the queue
    queue: QueuePlace | None = None


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int


class SourceRun(BaseModel):
    id: int
    name: str
    method: str
    dataset_id: int
    dataset_name: str
    image_size: int | None
    finished_at: datetime | None


class SourceRunsPublic(BaseModel):
    data: list[SourceRun]
    count: int


# ---- participant side ---------------------------------------------------------------------


class SessionStart(BaseModel):
    prolific_pid: str | None = Field(default=None, max_length=128)
    study_id: str | None = Field(default=None, max_length=128)
    session_id: str | None = Field(default=None, max_length=128)
    # the session token this browser was given when the PROLIFIC_PID started (kept in its
    # localStorage): a reused PROLIFIC_PID resumes only with it
    resume_token: str | None = Field(default=None, max_length=128)


class DeviceInfo(BaseModel):
    screen_width: int = Field(ge=0, le=100_000)
    screen_height: int = Field(ge=0, le=100_000)
    window_width: int = Field(ge=0, le=100_000)
    window_height: int = Field(ge=0, le=100_000)
    device_pixel_ratio: float = Field(gt=0, le=16)
    user_agent: str = Field(default="", max_length=1000)
    touch_only: bool = False


class StudyInfo(BaseModel):
    """What a participant's page needs before it starts: texts and sizes, nothing else."""

    name: str
    design: str
    accepting: bool
    texts: StudyTexts
    # label studies: the class names a participant chooses from, in index order (the answer
    # is the index); absent for the detection designs
    classes: list[str] | None = None
    image_width: int
    image_height: int
    # stimuli smaller than this many CSS pixels are drawn enlarged by an integer factor
    # (nearest neighbour): the largest number of device pixels per image pixel that keeps
    # them within it, at least 1
    display_target: int
    # that factor at a device pixel ratio of 1
    display_scale: int
    # the smallest window for the images as drawn, at a device pixel ratio of 1 (the device
    # check uses the participant's own)
    min_window_width: int
    min_window_height: int


class SessionState(BaseModel):
    token: str
    stage: str
    design: str
    practice_total: int
    practice_done: int
    main_total: int
    main_done: int
    completion_code: str | None = None
    completion_url: str | None = None


class TrialPayload(BaseModel):
    """One trial as the browser sees it: an opaque id and opaque image URLs, in display order."""

    id: str
    phase: Literal["practice", "main"]
    number: int
    images: list[str]


class TrialsPayload(BaseModel):
    data: list[TrialPayload]


class ExamplePayload(BaseModel):
    original: str
    changed: str


EARLIEST_SHOWN_AT = datetime(2020, 1, 1, tzinfo=UTC)


class AnswerIn(BaseModel):
    # 2AFC: "left" or "right" (which image was changed); yes/no: "yes" or "no"
    # label: a class index ("0", "1", ...) or "none" (can't tell)
    answer: (
        Literal["left", "right", "yes", "no", "none"]
        | Annotated[str, Field(pattern=r"^[0-9]{1,4}$")]
    )
    # milliseconds from the images appearing to the answer, measured by the page (a number:
    # true, false or "500" are refused, not read as 1, 0 and 500)
    rt_ms: float = Field(ge=0, le=3_600_000, strict=True)
    # when the images appeared, by the browser's clock: an ISO 8601 time (a number such as 0
    # is refused, not read as seconds since 1970), within a day of the server's clock or
    # since 2020
    shown_at: datetime | None = None

    @field_validator("shown_at", mode="before")
    @classmethod
    def _time_as_text(cls, value: object) -> object:
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 time, not a number")
        return value

    @field_validator("shown_at")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if not EARLIEST_SHOWN_AT <= aware <= datetime.now(UTC) + timedelta(days=1):
            raise ValueError("must be the time the images appeared (ISO 8601, e.g. from the clock)")
        return value

    # the integer factor the images were drawn at: device pixels per image pixel (nearest
    # neighbour); None when the page did not say
    display_scale: int | None = Field(default=None, ge=1, le=64, strict=True)


class DeviceCheck(BaseModel):
    # the device can take the study
    ok: bool
    # why not, one sentence each (the window size needed is named)
    problems: list[str]
    stage: str


class AnswerOut(BaseModel):
    trial: str
    stored: bool
    # only for practice trials, and only after the answer is stored
    feedback: bool | None = None
    stage: str
    remaining: int


class CompletionOut(BaseModel):
    completion_code: str
    completion_url: str | None


# ---- researcher's preview of the generated stimuli ------------------------------------------

StimulusPurpose = Literal["main", "practice", "catch", "reference", "example"]


class StimulusPreview(BaseModel):
    id: int
    run_id: int | None
    # None for the clean 2AFC reference images, which belong to no run
    run_name: str | None
    source_image_id: int
    # pixel units, as stored (8/255 = 8 grey levels)
    epsilon: float
    epsilon_255: float
    attack: str
    seed: int
    purpose: str
    # max |stimulus - source| in grey levels, measured from the files (None: a file is missing)
    linf_255: int | None
    # the stimulus's natural size in pixels (None: the file is missing)
    width: int | None
    height: int | None
    image_url: str


class StimuliPreviewPublic(BaseModel):
    data: list[StimulusPreview]
    # stimuli matching the filters (data is the page limit/offset of them)
    count: int
    limit: int
    offset: int
    # every stimulus of the study, by purpose (filters not applied)
    by_purpose: dict[str, int]


# ---- the researcher's run through the participant's flow ------------------------------------


class PreviewTrial(TrialPayload):
    # the right answer, so that the researcher's page judges practice answers itself
    correct_answer: str


class ParticipantPreview(BaseModel):
    """The participant's flow as participant number `condition_index` would see it, for the
    researcher; nothing of it is stored."""

    study_id: int
    condition_index: int
    info: StudyInfo
    example: ExamplePayload | None = None  # none in a label study
    trials: list[PreviewTrial]
    practice_total: int
    main_total: int
    completion_url: str | None
