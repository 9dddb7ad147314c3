"""ORM tables. API schemas live apart, in backend/schemas/."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("admin", "researcher", "annotator")
ANNOTATION_STATUSES = ("draft", "submitted", "accepted", "rejected")
# the drawing aids a mask revision's provenance names: freehand (brush, lasso), the magic wand,
# the superpixel brush, GrabCut refinement and an accepted machine proposal
PROVENANCE_TOOLS = ("drawn", "wand", "superpixels", "refined", "proposal")
SPLITS = ("train", "test")
# the annotation queue's ring of image positions: 0 <= Image.queue_position < QUEUE_RING
QUEUE_RING = 2**31 - 1
STUDY_DESIGNS = ("2afc", "yesno", "label")
STUDY_STATES = ("draft", "generating", "ready", "open", "closed", "failed")
# A study's moves (backend/services/study_lifecycle.py makes every one): its stimuli are
# generated (again, after a failure), then it is opened to participants and closed.
STUDY_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("generating",),
    "generating": ("ready", "failed"),  # failed: an error, or the queue could not be reached
    "failed": ("generating",),
    "ready": ("open",),
    "open": ("closed",),
    "closed": ("open",),
}
EVALUATION_STATES = ("queued", "running", "succeeded", "failed")
# An inequality evaluation's moves (backend/services/evaluation_lifecycle.py makes every one).
# A redelivered task takes a running evaluation over as it stands (no move): its worker died.
EVALUATION_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("running", "failed"),  # failed: the queue could not be reached
    "running": ("succeeded", "failed"),
    "succeeded": (),
    "failed": (),  # a new evaluation is asked for instead
}
# A training run's states and the moves between them (backend/services/run_lifecycle.py
# makes every move; the check constraint below holds RUN_STATES).
RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED_STATES = ("succeeded", "failed", "cancelled")
RUN_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("running", "cancelled", "failed"),  # failed: the queue could not be reached
    "running": ("succeeded", "failed", "cancelled", "queued"),  # queued: its worker vanished
    "failed": ("queued",),  # retried
    "cancelled": ("queued",),  # retried
    "succeeded": (),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class UtcDateTime(TypeDecorator[datetime]):
    """A time stored with its zone and read back as UTC with an explicit offset.

    PostgreSQL keeps the zone (timestamptz) but answers in the connection's zone; SQLite keeps
    none and answers naive times. Every time stored here is UTC, so a naive time read back is
    UTC: the API and the exports then always write it with its offset ("Z").
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @staticmethod
    def as_utc(value: datetime | None) -> datetime | None:
        """A naive time is UTC (everything stored here is); an aware one is moved to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def coerce_compared_value(self, op: Any, value: Any) -> Any:  # noqa: ARG002
        """A duration beside a time (`created_at - timedelta(...)`) is an interval, not a
        time to move to UTC."""
        if isinstance(value, timedelta):
            return Interval()
        return self

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        return self.as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        return self.as_utc(value)


Timestamp = UtcDateTime()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class LoginSession(Base):
    """One login (backend/services/logins.py). The client holds a random token; the row
    keeps only its SHA-256, so a copy of the database logs nobody in. A session ends when it
    expires, or at once when revoked (logout, password change, deactivation, sign out
    everywhere)."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # hex SHA-256 of the token the client holds (never the token itself)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # the last request made with it (updated at most once a minute)
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # what logged in, for an admin looking at a user's sessions (truncated)
    user_agent: Mapped[str | None] = mapped_column(String(255))
    ip_address: Mapped[str | None] = mapped_column(String(64))


class LoginFailure(Base):
    """One failed login, counted against its username ("account") and its client address
    ("address") for the failure window (Settings.login_failure_window_s); kept in the
    database so a restart does not reset the count."""

    __tablename__ = "login_failures"
    __table_args__ = (
        CheckConstraint("kind IN ('account', 'address', 'pair')", name="kind"),
        Index("ix_login_failures_kind_value_created_at", "kind", "value", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    # the username as typed (account), the client's IP address (address), or both
    # ("<username> @ <address>", pair)
    value: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # shown to annotators beside every image of this dataset
    instructions: Mapped[str] = mapped_column(Text, default="")
    # how many annotators should draw each image before it leaves the queue
    annotators_per_image: Mapped[int] = mapped_column(Integer, default=1)
    # machine proposals offered to its annotators: null (off, the default: a proposal can
    # anchor what people mark), "saliency" (a classical spectral-residual map) or "run:{id}"
    # (a finished run's salience maps)
    proposals: Mapped[str | None] = mapped_column(String(32), default=None)
    # sha256 over the sorted (content hash, label, split) of its images
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    classes: Mapped[list[DatasetClass]] = relationship(
        back_populates="dataset", order_by="DatasetClass.index", cascade="all, delete-orphan"
    )


class DatasetAssignment(Base):
    """An annotator assigned to a dataset. A dataset without any assignment is open to every
    annotator; one with assignments is shown to, and queued for, those annotators only."""

    __tablename__ = "dataset_assignments"
    __table_args__ = (UniqueConstraint("dataset_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class DatasetClass(Base):
    __tablename__ = "dataset_classes"
    __table_args__ = (
        UniqueConstraint("dataset_id", "name"),
        UniqueConstraint("dataset_id", "index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    index: Mapped[int] = mapped_column(Integer)

    dataset: Mapped[Dataset] = relationship(back_populates="classes")


def random_queue_position() -> int:
    """A new image's place on the annotation queue's ring (backend/services/masks/queue.py)."""
    return secrets.randbelow(QUEUE_RING)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        CheckConstraint(_in("split", SPLITS), name="split"),
        # the annotation queue walks this index: a dataset's images by slots held, then ring
        Index("ix_images_queue", "dataset_id", "queue_held", "queue_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    class_id: Mapped[int] = mapped_column(ForeignKey("dataset_classes.id", ondelete="CASCADE"))
    # path inside the imported tree, for people; storage_key is where the bytes are
    filename: Mapped[str] = mapped_column(String(500))
    storage_key: Mapped[str] = mapped_column(String(500))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # PIL mode of the stored file ("RGB", "L", ...)
    mode: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    split: Mapped[str] = mapped_column(String(8), default="train")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # The queue's bookkeeping: a random place on a ring (each annotator starts at a place of
    # their own), and how many annotations held a slot of the image when the queue last
    # counted them (a hint kept up to date by the queue, always re-counted before a claim).
    queue_position: Mapped[int] = mapped_column(Integer, default=random_queue_position)
    queue_held: Mapped[int] = mapped_column(Integer, default=0)

    dataset_class: Mapped[DatasetClass] = relationship()


class Annotation(Base):
    """One annotator's mask of one image; its pixels live in revisions, never overwritten."""

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("image_id", "annotator_id"),
        CheckConstraint(_in("status", ANNOTATION_STATUSES), name="status"),
        # an annotator's own masks (queue, home page) and the review queue by status
        Index("ix_annotations_annotator_id_status", "annotator_id", "status"),
        Index("ix_annotations_status_submitted_at", "status", "submitted_at"),
        # claims (no revision yet) by age: the queue frees the lapsed ones
        Index("ix_annotations_latest_revision_updated_at", "latest_revision", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    # number of the newest revision (0 before the first save)
    latest_revision: Mapped[int] = mapped_column(Integer, default=0)
    # active time on task, in milliseconds, as measured by the page
    active_ms: Mapped[int] = mapped_column(Integer, default=0)
    review_comment: Mapped[str] = mapped_column(Text, default="")
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    submitted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    revisions: Mapped[list[AnnotationRevision]] = relationship(
        back_populates="annotation", order_by="AnnotationRevision.revision"
    )


class AnnotationRevision(Base):
    __tablename__ = "annotation_revisions"
    __table_args__ = (
        UniqueConstraint("annotation_id", "revision"),
        UniqueConstraint("annotation_id", "save_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    annotation_id: Mapped[int] = mapped_column(ForeignKey("annotations.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    # chosen by the client once per save, so a retried save is recognised and not duplicated
    save_id: Mapped[str] = mapped_column(String(64))
    # "png" (1-bit PNG) or "rle" (COCO-style counts, column-major)
    mask_format: Mapped[str] = mapped_column(String(8), default="png")
    mask_bytes: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # number of salient pixels
    area: Mapped[int] = mapped_column(Integer)
    # sha256 of the decoded binary mask (row-major bytes 0/1)
    sha256: Mapped[str] = mapped_column(String(64))
    active_ms: Mapped[int] = mapped_column(Integer, default=0)
    # "browser", "import:png", "import:coco", ...
    source: Mapped[str] = mapped_column(String(32), default="browser")
    # which drawing aids made the mask: the share of its salient pixels each contributed
    # ({"drawn": 0.7, "wand": 0.3}, keys from PROVENANCE_TOOLS, shares summing to 1; {} for an
    # empty mask); null where the client did not say (imports, pages before issue 28)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # the machine proposal the annotator started from ("saliency", "run:12"), or null: a
    # proposal can anchor what people mark, so a seeded mask stays marked as such even when
    # none of the proposal's pixels are left
    proposal_source: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    annotation: Mapped[Annotation] = relationship(back_populates="revisions")


class Skip(Base):
    __tablename__ = "skips"
    __table_args__ = (
        UniqueConstraint("image_id", "annotator_id"),
        Index("ix_skips_annotator_id", "annotator_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class QueueCount(Base):
    """How many images of a dataset have `held` slots held (Image.queue_held): kept by the
    database's triggers (migration 0016), read by the annotation queue's "remaining"."""

    __tablename__ = "queue_counts"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    held: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    images: Mapped[int] = mapped_column(Integer)


class QueueTouched(Base):
    """How many images of a dataset with `held` slots held an annotator touched (has an
    annotation of, a claim included, or skipped): kept by the database's triggers (migration
    0016), read by the annotation queue's "remaining"."""

    __tablename__ = "queue_touched"

    annotator_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    held: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    images: Mapped[int] = mapped_column(Integer)


class MaskSet(Base):
    """A frozen, hashed snapshot of the consensus masks (and the revisions behind them)."""

    __tablename__ = "mask_sets"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    # the filter used to freeze it: statuses, min annotators, min agreement, threshold
    filter: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # sha256 over the sorted (image id, revision ids, consensus bytes) of its items
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    num_images: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    items: Mapped[list[MaskSetItem]] = relationship(cascade="all, delete-orphan")


class MaskSetItem(Base):
    __tablename__ = "mask_set_items"
    __table_args__ = (UniqueConstraint("mask_set_id", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mask_set_id: Mapped[int] = mapped_column(ForeignKey("mask_sets.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    # ids of the annotation revisions averaged into this consensus
    revision_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # the mean of the binary masks as an 8-bit PNG (255 = every annotator marked it)
    consensus_png: Mapped[bytes] = mapped_column(LargeBinary)
    num_annotators: Mapped[int] = mapped_column(Integer)
    # mean pairwise IoU of the masks (None with a single annotator)
    agreement: Mapped[float | None] = mapped_column(Float)


class TrainingRun(Base):
    __tablename__ = "training_runs"
    __table_args__ = (
        CheckConstraint(_in("state", RUN_STATES), name="state"),
        Index("ix_training_runs_created_at", "created_at"),  # the runs table, newest first
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # runs launched together (several seeds) share a group
    group_key: Mapped[str] = mapped_column(String(64), index=True, default="")
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    mask_set_id: Mapped[int | None] = mapped_column(ForeignKey("mask_sets.id", ondelete="RESTRICT"))
    method: Mapped[str] = mapped_column(String(32))
    # the validated launch configuration (training-library field names)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    # fraction of the run done, 0..1: its training and its final evaluation, weighed by their
    # work (runconfig.cost), so it reaches 1 only when the evaluation ends
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    # the run's work as the worker last reported it (run_lifecycle.report_batch and
    # report_evaluation): phase ("training" or "evaluating"), the units of each, the measured
    # rate, and the evaluation's stage with its images
    work: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    current_epoch: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int] = mapped_column(Integer, default=0)
    final_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # storage key of the folder holding checkpoints and metrics.json
    checkpoint_key: Mapped[str | None] = mapped_column(String(500))
    # seed, code version, package versions, dataset and mask-set hashes, device
    reproducibility: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    worker_hostname: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # the last time the recovery sent a queued run's message again (its worker went quiet,
    # or the broker lost the message), and why: shown on the run's page
    resent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    resent_why: Mapped[str | None] = mapped_column(Text)
    cloned_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_runs.id", ondelete="SET NULL")
    )
    # the sweep it is one run of (backend/services/sweeps.py); a run of a sweep waits queued
    # without a dispatch token until its sweep's turn (celery_task_id None)
    sweep_id: Mapped[int | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="SET NULL"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)

    epochs: Mapped[list[RunEpoch]] = relationship(
        order_by="RunEpoch.epoch", cascade="all, delete-orphan"
    )


class WorkerPresence(Base):
    """A Celery worker that is listening, as it last said (worker/recovery.py, on its timer and
    when a task starts or ends; its row goes when it shuts down): the queue view counts the
    workers and says who does what."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200), unique=True)
    queues: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # the GPUs it may lease (empty: it trains on the CPU), and who holds each lease
    gpus: Mapped[list[Any]] = mapped_column(JSON, default=list)
    leases: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # what it is doing: {"kind": "run" | "evaluation" | "study", "id": ...}; None when idle
    job: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Sweep(Base):
    """Runs launched together over a grid of one or two settings and seeds, with an optional
    baseline arm (runconfig/sweep.py); its runs are sent to the workers a few at a time."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    # the launch form every run starts from (its settings and the app objects it names)
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    # [{"name": setting, "values": [...]}], one or two, in the order given
    axes: Mapped[list[Any]] = mapped_column(JSON)
    seeds: Mapped[list[Any]] = mapped_column(JSON)
    # the settings that set the baseline arm apart ({"method": "pgd_at"}), or None
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # how many of its runs may be queued at the broker or running at once
    in_flight: Mapped[int] = mapped_column(Integer, default=2)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class RunEpoch(Base):
    """Metrics of one finished epoch (train loss, clean and robust accuracy, ...)."""

    __tablename__ = "run_epochs"
    __table_args__ = (UniqueConstraint("run_id", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class RunBatch(Base):
    """Training figures of a run reported every few batches (the live curves): the mean
    loss and accuracy over the batches since the previous point, and the measured rate."""

    __tablename__ = "run_batches"
    __table_args__ = (UniqueConstraint("run_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"))
    # batches done since the run began (over all epochs), at this point
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)  # 1-based, the epoch this point falls in
    loss: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float] = mapped_column(Float)
    images_per_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Study(Base):
    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint(_in("design", STUDY_DESIGNS), name="design"),
        CheckConstraint(_in("state", STUDY_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    design: Mapped[str] = mapped_column(String(8))
    # epsilon grid, trials per condition, catch and practice trials, texts, exclusion rules,
    # completion URL
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="draft")
    # fraction of stimulus generation done, 0..1
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    # the secret part of the participant link
    link_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class StudyRun(Base):
    __tablename__ = "study_runs"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    run_id: Mapped[int] = mapped_column(
        ForeignKey("training_runs.id", ondelete="RESTRICT"), primary_key=True
    )


class Stimulus(Base):
    """One image shown to participants: a source image, clean or attacked by a run's model."""

    __tablename__ = "stimuli"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    # opaque random id, the only name the participant's browser ever sees
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    source_image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    # pixel units (8/255 = 8 grey levels); 0 for a clean image
    epsilon: Mapped[float] = mapped_column(Float)
    attack: Mapped[str] = mapped_column(String(32), default="pgd-linf")
    seed: Mapped[int] = mapped_column(Integer, default=0)
    # "main", "practice" or "catch"
    purpose: Mapped[str] = mapped_column(String(16), default="main")
    storage_key: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ParticipantSession(Base):
    """An anonymous participant reached by the study link; not a user."""

    __tablename__ = "participant_sessions"
    __table_args__ = (UniqueConstraint("study_id", "participant_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    # the secret the browser holds for this session
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # PROLIFIC_PID when given, else a random id: one link answers once per participant
    participant_key: Mapped[str] = mapped_column(String(128))
    prolific_pid: Mapped[str | None] = mapped_column(String(128))
    prolific_study_id: Mapped[str | None] = mapped_column(String(128))
    prolific_session_id: Mapped[str | None] = mapped_column(String(128))
    # counterbalancing cell this participant was assigned to
    condition_index: Mapped[int] = mapped_column(Integer, default=0)
    # "consent", "practice", "main", "completed"
    stage: Mapped[str] = mapped_column(String(16), default="consent")
    screen_width: Mapped[int | None] = mapped_column(Integer)
    screen_height: Mapped[int | None] = mapped_column(Integer)
    device_pixel_ratio: Mapped[float | None] = mapped_column(Float)
    user_agent: Mapped[str | None] = mapped_column(Text)
    completion_code: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("session_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("participant_sessions.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int] = mapped_column(Integer)
    # opaque id the browser answers by
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    # "practice", "main" or "catch"
    phase: Mapped[str] = mapped_column(String(16))
    # 2AFC: the left and right images; yes/no: only left
    left_stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimuli.id", ondelete="CASCADE"))
    right_stimulus_id: Mapped[int | None] = mapped_column(
        ForeignKey("stimuli.id", ondelete="CASCADE")
    )
    # the right answer, never sent to the browser before it answers:
    # 2AFC "left"/"right"; yes/no "yes"/"no"; label: the class index (a string)
    correct_answer: Mapped[str] = mapped_column(String(8))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    epsilon: Mapped[float] = mapped_column(Float)
    # QUEST+ placement: the run's posterior summary once this trial's answer was counted
    # (threshold, its interval, the next epsilon chosen, whether the run stopped); never sent
    # to the participant
    posterior: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class QuestTrack(Base):
    """One participant's QUEST+ placement for one run (backend/services/studies/adaptive.py):
    the posterior over the Weibull's parameters after the answers counted so far, kept so that
    a reload, or the next answer, goes on from it."""

    __tablename__ = "quest_tracks"
    __table_args__ = (UniqueConstraint("session_id", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("participant_sessions.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[int] = mapped_column(Integer)
    # the posterior's values, flattened in the order of adaptive.PARAM_GRID
    posterior: Mapped[list[Any]] = mapped_column(JSON)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    # the epsilon (grey levels) its next trial shows
    next_epsilon_255: Mapped[float] = mapped_column(Float)
    # why it stopped ("trial count" or "posterior width"); None while it goes on
    stopped: Mapped[str | None] = mapped_column(String(32))


class Response(Base):
    __tablename__ = "responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), unique=True)
    answer: Mapped[str] = mapped_column(String(8))
    correct: Mapped[bool] = mapped_column(Boolean)
    # response time measured by the page, in milliseconds
    rt_ms: Mapped[float] = mapped_column(Float)
    # the integer factor the stimuli were drawn at (nearest neighbour), as the page reported
    display_scale: Mapped[int | None] = mapped_column(Integer)
    shown_at: Mapped[datetime | None] = mapped_column(Timestamp)
    answered_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class InequalityEvaluation(Base):
    """The IGD / Duan inequality tests of one or more finished runs, all on one set of test
    images that every one of them classifies correctly (worker/evaluation_tasks.py)."""

    __tablename__ = "inequality_evaluations"
    __table_args__ = (CheckConstraint(_in("state", EVALUATION_STATES), name="state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # the runs evaluated, in the order they were asked for
    run_ids: Mapped[list[Any]] = mapped_column(JSON)
    # the sorted run ids joined by commas ("3,5"): finds the latest evaluation of a set of runs
    run_key: Mapped[str] = mapped_column(String(255), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    # how many common test images were asked for (fewer when fewer are correct for every run)
    n_requested: Mapped[int] = mapped_column(Integer)
    # true when several runs share one image set; one run is scored on its own correct set
    common_set: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    # fraction of the evaluation done over all runs, 0..1
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    # {"images": {"n", "image_ids", "test_indices"}, "runs": {run id: inequality_tests(...)}}
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class AuthEpoch(Base):
    """One row (id 1): a counter that every revocation of a login, and every change of a
    user's role, activity or password, adds 1 to in its own transaction. A server process
    trusts a login it looked up before only while the counter is unchanged
    (backend/services/logins.py, current_login)."""

    __tablename__ = "auth_epoch"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)
