"""The annotation queue and saving masks: claims on queue slots, the next image for an
annotator (in an order of its own, shuffled per annotator and dataset), which datasets an
annotator may work on (assignments), what remains, skips, and saving revisions of an
annotation safely under concurrent (and repeated) requests, then submitting it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    ScalarSelect,
    Select,
    Update,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Invalid
from backend.db import lock_for_write
from backend.models import (
    QUEUE_RING,
    Annotation,
    AnnotationRevision,
    Dataset,
    Image,
    QueueCount,
    QueueTouched,
    Skip,
    User,
    utcnow,
)
from backend.services.assignments import check_dataset_open, dataset_open_to
from backend.services.masks.codec import mask_sha256, mask_to_png

_logger = logging.getLogger(__name__)

# A draft annotation without any saved revision is a claim on a queue slot handed out by
# /annotate/next; it stops holding the slot after this long without a save.
CLAIM_TTL = timedelta(minutes=30)

# A mask covering less than this share of its image is "tiny": the page asks before it is
# submitted and the review flags it (an empty one too; the server refuses to submit an
# empty mask unless the annotator confirmed it).
TINY_FRACTION = 0.005

# /next reads this many candidates round the ring per try, and tries this often per bucket
# of slots held before it moves on (a try fails only when every candidate is being claimed
# by someone else at that moment, or its count was stale)
QUEUE_WINDOW = 16
QUEUE_TRIES = 4

# The queue's shuffle: an integer hash of (image id, annotator, dataset) computed in SQL with
# 64-bit integer arithmetic that PostgreSQL and SQLite evaluate alike (no xor, no floats).
# Two multiply-add-mod rounds with a squaring in between, so neighbouring ids (images of
# one class are imported together) land far apart. _PRIME < 2**31: every product < 2**62.
_PRIME = 2_147_483_629
_MUL_1 = 1_103_515_245
_MUL_2 = 69_069


def mask_flags(area: int, width: int, height: int) -> list[str]:
    """A mask's flags: "empty" without a pixel, "tiny" under TINY_FRACTION of the image."""
    if area <= 0:
        return ["empty"]
    if area < TINY_FRACTION * width * height:
        return ["tiny"]
    return []


def annotator_seed(user: User) -> int:
    """The annotator's part of the queue's shuffle (stable: derived from the id alone)."""
    return (user.id * 2_654_435_761 + 97) % _PRIME


def queue_order_key(user: User) -> ColumnElement[int]:
    """The annotator's shuffled position of an image, a SQL expression over Image.id and
    Image.dataset_id: stable across requests, different per annotator and per dataset."""
    return _order_key(literal(annotator_seed(user)))


def _order_key(seed: ColumnElement[int]) -> ColumnElement[int]:
    """queue_order_key for a seed given as a SQL expression (a literal, or a bound parameter
    of a statement built once)."""
    x = (cast(Image.id, BigInteger) + cast(Image.dataset_id, BigInteger) * literal(7_919)) % (
        literal(_PRIME)
    )
    t = (x * literal(_MUL_1) + seed) % literal(_PRIME)
    t = (t * t + seed) % literal(_PRIME)
    return (t * literal(_MUL_2) + literal(12_345)) % literal(_PRIME)


# ---------------------------------------------------------------------------- assignments


def _in_open_dataset(user: User) -> ColumnElement[bool]:
    """Image.dataset_id among the datasets open to the annotator: an uncorrelated subquery
    over the few datasets, evaluated once (not once per image)."""
    return Image.dataset_id.in_(select(Dataset.id).where(dataset_open_to(user)))


# ---------------------------------------------------------------------------- the queue


def _holds_slot(now: datetime) -> ColumnElement[bool]:
    """Annotations that count against an image's annotators_per_image (imported masks of
    the "import:<name>" pseudo-annotators do not: people still draw those images; nor do
    drafts their annotator skipped)."""
    return _holds_slot_after(now - CLAIM_TTL)


def _holds_slot_after(fresh_after: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """_holds_slot, claims counted when updated after `fresh_after` (a time, or a bound
    parameter)."""
    imported = select(User.id).where(User.username.like("import:%"))
    skipped = exists().where(
        Skip.image_id == Annotation.image_id, Skip.annotator_id == Annotation.annotator_id
    )
    return and_(
        Annotation.status != "rejected",
        Annotation.annotator_id.not_in(imported),
        ~skipped,
        or_(Annotation.latest_revision > 0, Annotation.updated_at > fresh_after),
    )


def _exact_held(now: datetime) -> ScalarSelect[int]:
    """The number of annotations holding a slot of Image (a correlated count)."""
    return _exact_held_after(now - CLAIM_TTL)


def _exact_held_after(fresh_after: datetime | ColumnElement[datetime]) -> ScalarSelect[int]:
    return (
        select(func.count())
        .select_from(Annotation)
        .where(Annotation.image_id == Image.id, _holds_slot_after(fresh_after))
        .scalar_subquery()
    )


def lock_images(db: Session, image_ids: list[int]) -> None:
    """Lock image rows for a change of their slots, in id order. FOR NO KEY UPDATE, not FOR
    UPDATE: rows of other tables that refer to the image (a new skip or annotation) take a
    KEY SHARE lock on it, which this one does not block, so two annotators skipping one
    image at once queue behind each other instead of deadlocking."""
    db.execute(
        select(Image.id)
        .where(Image.id.in_(image_ids))
        .order_by(Image.id)
        .with_for_update(key_share=True)
    )


def recount(db: Session, image_ids: Iterable[int], *, locked: bool = False) -> None:
    """Count again the slots held on these images (Image.queue_held), in the caller's
    transaction. Every change of who holds a slot calls it: a claim, a first save, a redo,
    a skip, a review decision. The rows are locked in id order (unless the caller `locked`
    them already, with lock_images), so two recounts never deadlock."""
    ids = sorted(set(image_ids))
    if not ids:
        return
    if not locked:
        lock_images(db, ids)
    db.execute(
        update(Image)
        .where(Image.id.in_(ids))
        .values(queue_held=_exact_held(utcnow()))
        .execution_options(synchronize_session=False)
    )


def _ring_start(user: User, dataset_id: int) -> int:
    """Where the annotator starts on the dataset's ring of images."""
    return (annotator_seed(user) + dataset_id * 40_503) % QUEUE_RING


Param = int | ColumnElement[int]  # a value, or a bound parameter of a statement built once


def _untouched_by(user_id: Param) -> ColumnElement[bool]:
    """Images this annotator has neither a mask (or claim) of nor skipped."""
    mine = exists().where(Annotation.image_id == Image.id, Annotation.annotator_id == user_id)
    skipped = exists().where(Skip.image_id == Image.id, Skip.annotator_id == user_id)
    return and_(~mine, ~skipped)


def _window_reads(user: User, dataset_id: int, held: int) -> list[Select[int, int]]:
    """The two index range reads of one bucket's window: from the annotator's place on the
    ring to its end, then from its start (each QUEUE_WINDOW at most)."""
    return _window_reads_at(user.id, dataset_id, held, _ring_start(user, dataset_id))


def _window_reads_at(
    user_id: Param, dataset_id: Param, held: int, start: Param
) -> list[Select[int, int]]:
    base = select(Image.id, Image.queue_position).where(
        Image.dataset_id == dataset_id, Image.queue_held == held, _untouched_by(user_id)
    )
    return [
        base.where(Image.queue_position >= start)
        .order_by(Image.queue_position)
        .limit(QUEUE_WINDOW),
        base.where(Image.queue_position < start).order_by(Image.queue_position).limit(QUEUE_WINDOW),
    ]


def _windows(
    db: Session, user: User, dataset_id: int, buckets: Iterable[int]
) -> dict[int, list[int]]:
    """The first QUEUE_WINDOW images of each bucket (images with `held` slots taken) that this
    annotator has not touched, going round the ring from their place: every bucket's range
    reads in one statement (each a subquery, so SQLite takes it too)."""
    parts = []
    for held in buckets:
        for part, read in enumerate(_window_reads(user, dataset_id, held)):
            sub = read.subquery()
            parts.append(
                select(
                    literal(held).label("held"),
                    literal(part).label("part"),
                    sub.c.queue_position,
                    sub.c.id,
                )
            )
    if not parts:
        return {}
    found: dict[int, list[int]] = {}
    for held, _, _, image_id in sorted(db.execute(union_all(*parts)).all()):
        window = found.setdefault(int(held), [])
        if len(window) < QUEUE_WINDOW:
            window.append(image_id)
    return found


def _claim_at_once(db: Session, user: User, dataset: Dataset, now: datetime) -> Image | None:
    """The claim in one statement: every bucket's window read, the pick (most-held bucket
    first, then the annotator's own shuffle), its lock (SKIP LOCKED on PostgreSQL: another
    annotator's pick at the same moment is passed over, not waited for) and the new slot
    count, as an UPDATE of the picked image's row; the caller then adds the claim's
    annotation. None when no image could be taken this way (none left, all of the windows'
    images being claimed by others at this moment, or a stored count found too low): the
    caller then takes the slower path of _claim_in.

    The new count is one more than the larger of the stored count and an exact count of the
    slots held: the stored one is the newest version of the locked row (a claim committed
    while this statement ran is in it), the exact one guards against a stored count that
    is too low. A stored count may be too high (a claim lapsed since it was counted); such
    an image waits in a fuller bucket until it is counted again (_free_expired_claims)."""
    params = {
        "q_user_id": user.id,
        "q_dataset_id": dataset.id,
        "q_start": _ring_start(user, dataset.id),
        "q_seed": annotator_seed(user),
        "q_fresh_after": now - CLAIM_TTL,
    }
    return db.scalars(_claim_statement(dataset.annotators_per_image), params).first()


@functools.cache
def _claim_statement(k: int) -> Update:
    """_claim_at_once's statement for annotators_per_image = k, built once per process (its
    values are bound parameters), so an ask neither builds nor compiles it again."""
    user_id = bindparam("q_user_id", type_=Integer)
    dataset_id = bindparam("q_dataset_id", type_=Integer)
    start = bindparam("q_start", type_=Integer)
    seed = bindparam("q_seed", type_=BigInteger)
    fresh_after = bindparam("q_fresh_after", type_=Annotation.updated_at.type)
    parts = []
    for held in range(k - 1, -1, -1):
        for read in _window_reads_at(user_id, dataset_id, held, start):
            parts.append(select(read.subquery().c.id))
    pick = (
        select(Image.id)
        .where(Image.id.in_(union_all(*parts)), Image.queue_held < k)
        .order_by(Image.queue_held.desc(), _order_key(seed), Image.id)
        .limit(1)
        .with_for_update(skip_locked=True, key_share=True)
        .correlate(None)
        .scalar_subquery()
    )
    exact = _exact_held_after(fresh_after)
    taken = case((Image.queue_held > exact, Image.queue_held), else_=exact)
    return (
        update(Image)
        .where(Image.id == pick, taken < k)
        .values(queue_held=taken + 1)
        .returning(Image)
        .execution_options(synchronize_session=False)
    )


def _add_claim(db: Session, user: User, image_id: int, now: datetime) -> None:
    """The claim's draft annotation (IntegrityError when a second tab of the same annotator
    claimed the image at the same moment)."""
    db.add(
        Annotation(
            image_id=image_id,
            annotator_id=user.id,
            status="draft",
            created_at=now,
            updated_at=now,
        )
    )
    db.flush()


def _claim_in(db: Session, user: User, dataset: Dataset, now: datetime) -> Image | None:
    """Claim an image of this dataset for the annotator, or None when none is left.

    The most-held images first (to finish images), each bucket read as a window from the
    annotator's place on the ring and ordered inside the window by the annotator's own
    shuffle; the chosen row is locked (SKIP LOCKED on PostgreSQL: annotators asking at once
    take different images without waiting for each other) and its slots counted exactly
    before the claim, so a stale count never gives an image more masks than it needs."""
    k = dataset.annotators_per_image
    image = _claim_at_once(db, user, dataset, now)
    if image is not None:
        _add_claim(db, user, image.id, now)
        return image
    first = _windows(db, user, dataset.id, range(k - 1, -1, -1))  # every bucket at once
    for held in range(k - 1, -1, -1):
        for attempt in range(QUEUE_TRIES):
            if attempt == 0:
                window = first.get(held, [])
            else:  # every candidate was being claimed: read this bucket again
                window = _windows(db, user, dataset.id, [held]).get(held, [])
            if not window:
                break
            image_id = db.scalar(
                select(Image.id)
                .where(Image.id.in_(window), Image.queue_held == held)
                .order_by(queue_order_key(user), Image.id)
                .limit(1)
                .with_for_update(skip_locked=True, key_share=True)
            )
            if image_id is None:  # every one of them is being claimed right now
                continue
            taken = db.scalar(select(_exact_held(now)).where(Image.id == image_id)) or 0
            if taken < k:
                _add_claim(db, user, image_id, now)
                recount(db, [image_id])
                return db.get(Image, image_id)
            # the count was stale (saves beside the queue): correct it and look again
            db.execute(
                update(Image)
                .where(Image.id == image_id)
                .values(queue_held=taken)
                .execution_options(synchronize_session=False)
            )
    return None


def _free_expired_claims(db: Session, dataset_id: int, now: datetime) -> int:
    """Count again the images whose claims lapsed (CLAIM_TTL without a save): they no
    longer hold a slot, but nothing happened that would have counted them again. Returns how
    many images were counted."""
    lapsed = db.scalars(
        select(Annotation.image_id)
        .join(Image, Image.id == Annotation.image_id)
        .where(
            Annotation.latest_revision == 0,
            Annotation.updated_at <= now - CLAIM_TTL,
            Image.dataset_id == dataset_id,
            Image.queue_held > 0,
        )
        .limit(10_000)
    ).all()
    recount(db, lapsed)
    return len(lapsed)


def _open_datasets(db: Session, user: User, dataset_id: int | None) -> list[Dataset]:
    query = select(Dataset).where(dataset_open_to(user)).order_by(Dataset.id)
    if dataset_id is not None:
        query = query.where(Dataset.id == dataset_id)
    return list(db.scalars(query).all())


def _own_pending(user: User, dataset_id: int | None) -> Select[int, int, str]:
    """This annotator's drafts and rejected masks (resume / redo), not skipped ones."""
    skipped = select(Skip.image_id).where(Skip.annotator_id == user.id)
    query = (
        select(Annotation.image_id, Image.dataset_id, Annotation.status)
        .join(Image, Image.id == Annotation.image_id)
        .where(
            Annotation.annotator_id == user.id,
            Annotation.status.in_(("draft", "rejected")),
            Annotation.image_id.not_in(skipped),
            _in_open_dataset(user),
        )
    )
    if dataset_id is not None:
        query = query.where(Image.dataset_id == dataset_id)
    return query


def _remaining_in(db: Session, user: User, dataset: Dataset) -> int:
    """Images of the dataset still waiting for this annotator: those with a free slot they
    have not touched, and their own drafts and returned masks. One statement over the
    queue's counters (QueueCount, QueueTouched: kept exact by the database's triggers in
    every transaction that changes a slot count, a claim, a skip or a mask) and the
    annotator's few pending masks; no count over the dataset's images."""
    params = {"user_id": user.id, "dataset_id": dataset.id, "k": dataset.annotators_per_image}
    n_open, n_touched, n_pending = db.execute(_remaining_statement(), params).one()
    return max(0, int(n_open) - int(n_touched)) + int(n_pending)


@functools.cache
def _remaining_statement() -> Select[int, int, int]:
    """_remaining_in's statement, built once per process (its values are bound parameters).
    The pending masks are counted in the dataset asked for (whether it is open to the
    annotator is the caller's check)."""
    user_id = bindparam("user_id", type_=Integer)
    dataset_id = bindparam("dataset_id", type_=Integer)
    k = bindparam("k", type_=Integer)
    open_n = (
        select(func.coalesce(func.sum(QueueCount.images), 0))
        .where(QueueCount.dataset_id == dataset_id, QueueCount.held < k)
        .scalar_subquery()
    )
    touched = (
        select(func.coalesce(func.sum(QueueTouched.images), 0))
        .where(
            QueueTouched.annotator_id == user_id,
            QueueTouched.dataset_id == dataset_id,
            QueueTouched.held < k,
        )
        .scalar_subquery()
    )
    skipped = select(Skip.image_id).where(Skip.annotator_id == user_id)
    pending = (
        select(func.count())
        .select_from(Annotation)
        .join(Image, Image.id == Annotation.image_id)
        .where(
            Annotation.annotator_id == user_id,
            Annotation.status.in_(("draft", "rejected")),
            Annotation.image_id.not_in(skipped),
            Image.dataset_id == dataset_id,
        )
        .scalar_subquery()
    )
    return select(open_n, touched, pending)


def remaining_by_dataset(db: Session, user: User) -> dict[int, int]:
    return {ds.id: _remaining_in(db, user, ds) for ds in _open_datasets(db, user, None)}


def returned_by_dataset(db: Session, user: User) -> dict[int, int]:
    """How many of this annotator's masks a reviewer returned (rejected, not redone yet)."""
    pending = _own_pending(user, None).where(Annotation.status == "rejected").subquery()
    rows = db.execute(
        select(pending.c.dataset_id, func.count()).group_by(pending.c.dataset_id)
    ).all()
    return dict(rows)


def remaining(db: Session, user: User, dataset_id: int) -> int:
    dataset = db.get(Dataset, dataset_id)
    return 0 if dataset is None else _remaining_in(db, user, dataset)


def next_image(db: Session, user: User, dataset_id: int | None) -> Image | None:
    """The next image for this annotator (next_for without whether it was claimed now)."""
    return next_for(db, user, dataset_id).image


class NextImage(NamedTuple):
    """What next_for found: the image (None when the queue is empty), whether it was claimed
    now (then the annotator has no mask of it yet), and its dataset when it was (loaded
    already: the answer needs it)."""

    image: Image | None
    claimed_now: bool
    dataset: Dataset | None


def next_for(db: Session, user: User, dataset_id: int | None) -> NextImage:
    """The next image for this annotator, claimed for them; None when the queue is empty
    (NotFound for a dataset_id that does not exist or is not open to them).

    Own drafts and rejected masks come first (rejected first). Otherwise the image with
    the most annotations still short of annotators_per_image (to finish images), then in
    this annotator's own order (a window read from their place on the dataset's ring,
    shuffled by queue_order_key: not by class, stable across requests, different per
    annotator), only in datasets open to them, one dataset after another by id.

    A claim is a draft annotation without revisions. It is made under a lock of the image's
    row after an exact count of the slots held, so two annotators asking at once never both
    take an image's last slot. A claim that sees no save for CLAIM_TTL stops holding the
    slot, so an abandoned tab does not block an image for ever (the cost: an image may then
    get one mask too many).

    Returns a NextImage (image None when the queue is empty).
    """
    datasets = _open_datasets(db, user, dataset_id)
    if dataset_id is not None and not datasets:
        check_dataset_open(db, user, dataset_id)  # 404: no such dataset, or not assigned
    own = db.execute(
        _own_pending(user, dataset_id)
        .order_by((Annotation.status == "rejected").desc(), Annotation.updated_at, Annotation.id)
        .limit(1)
    ).first()
    if own is not None:
        return NextImage(db.get(Image, own[0]), False, None)
    postgresql = db.get_bind().dialect.name == "postgresql"
    if not postgresql:
        lock_for_write(db)  # SQLite has no row locks: the pick and claim run one at a time
    now = utcnow()
    try:
        for dataset in datasets:
            image = _claim_in(db, user, dataset, now)
            if image is None and _free_expired_claims(db, dataset.id, now):
                image = _claim_in(db, user, dataset, now)
            if image is not None:
                if postgresql:
                    # A claim lost in a crash of the database costs nothing (the image's
                    # first save claims it again, with the same check of its slots), so its
                    # commit does not wait for the disk: a few ms less per ask.
                    db.execute(text("SET LOCAL synchronous_commit TO OFF"))
                db.commit()
                return NextImage(image, True, dataset)
    except IntegrityError:  # a second tab of the same annotator claimed it at the same time
        db.rollback()
        return next_for(db, user, dataset_id)
    db.commit()  # keeps the corrected counts
    return NextImage(None, False, None)


def skip_image(db: Session, user: User, image: Image, reason: str) -> None:
    """Record a skip; a mask already submitted or accepted cannot be skipped (409).

    A claim without any save is dropped. A draft with saves is kept (its revisions are never
    deleted) but no longer holds a slot, never returns to the queue and never enters a
    consensus (only submitted and accepted masks do)."""
    ann = db.scalar(
        select(Annotation).where(
            Annotation.image_id == image.id, Annotation.annotator_id == user.id
        )
    )
    if ann is not None and ann.status in ("submitted", "accepted"):
        raise Conflict("You already submitted a mask for this image.")
    lock_images(db, [image.id])
    existing = db.scalar(
        select(Skip).where(Skip.image_id == image.id, Skip.annotator_id == user.id)
    )
    if existing is None:
        db.add(Skip(image_id=image.id, annotator_id=user.id, reason=reason))
    else:
        existing.reason = reason
    if ann is not None and ann.status == "draft" and ann.latest_revision == 0:
        db.execute(delete(Annotation).where(Annotation.id == ann.id))
    try:
        db.flush()
        recount(db, [image.id], locked=True)
        db.commit()
    except IntegrityError:  # the same skip sent twice at once: the first one stands
        db.rollback()


# ---------------------------------------------------------------------------- saving


@dataclass(frozen=True)
class Origin:
    """Where a revision comes from: the save's source ("browser", "import:png"), the share of
    its pixels each drawing aid contributed, and the machine proposal it started from."""

    source: str
    provenance: dict[str, float] | None
    proposal_source: str | None


@dataclass
class SaveResult:
    annotation: Annotation
    revision: AnnotationRevision
    created: bool


def _get_or_create_annotation(db: Session, user: User, image: Image) -> Annotation:
    query = select(Annotation).where(
        Annotation.image_id == image.id, Annotation.annotator_id == user.id
    )
    ann = db.scalar(query)
    if ann is not None:
        return ann
    now = utcnow()
    try:
        with db.begin_nested():
            ann = Annotation(
                image_id=image.id,
                annotator_id=user.id,
                status="draft",
                created_at=now,
                updated_at=now,
            )
            db.add(ann)
    except IntegrityError:  # created by a concurrent request of the same annotator
        ann = db.scalar(query)
        assert ann is not None
    return ann


def _check_may_start(db: Session, user: User, image: Image) -> None:
    """A first save on an image needs a free slot and no skip by this annotator."""
    if db.scalar(select(Skip.id).where(Skip.image_id == image.id, Skip.annotator_id == user.id)):
        raise Conflict("You skipped this image.")
    dataset = db.get(Dataset, image.dataset_id)
    taken = (
        db.scalar(
            select(func.count())
            .select_from(Annotation)
            .where(
                Annotation.image_id == image.id,
                Annotation.annotator_id != user.id,
                _holds_slot(utcnow()),
            )
        )
        or 0
    )
    if dataset is not None and taken >= dataset.annotators_per_image:
        raise Conflict("This image already has enough masks; take the next one from your queue.")


def save_mask(
    db: Session,
    user: User,
    image: Image,
    *,
    save_id: str,
    mask: np.ndarray,
    active_ms: int,
    source: str = "browser",
    check_queue: bool = True,
    status_after: str | None = None,
    provenance: dict[str, float] | None = None,
    proposal_source: str | None = None,
) -> SaveResult:
    """Add a revision to the user's annotation of the image (idempotent per save_id).

    Saves on a submitted (not yet reviewed) mask are allowed and put it back to draft, so
    the reviewer never sees a mask that changes after submission; a rejected one also
    returns to draft (the redo); an accepted mask is final (409). `provenance` (the share of
    the salient pixels each drawing aid contributed) and `proposal_source` are recorded on
    the revision as the client measured them; an empty mask has no shares.
    """
    if mask.shape != (image.height, image.width):
        raise Invalid(
            f"The mask is {mask.shape[1]}x{mask.shape[0]} pixels but the image is "
            f"{image.width}x{image.height}."
        )
    png = mask_to_png(mask)
    digest = mask_sha256(mask)
    area = int(np.count_nonzero(mask))
    if provenance is not None and area == 0:
        provenance = {}
    if provenance is not None and area > 0 and not provenance:
        raise Invalid("The mask has salient pixels but its provenance names no tool.")
    origin = Origin(source, provenance, proposal_source)
    for attempt in range(3):
        try:
            return _save_once(
                db,
                user,
                image,
                save_id,
                png,
                digest,
                area,
                active_ms,
                origin,
                check_queue,
                status_after,
            )
        except IntegrityError:
            # Two identical save_ids raced past the lookup: the loser finds the winner's row.
            db.rollback()
            _logger.info(
                "save %s on image %s retried after a conflict (%d)", save_id, image.id, attempt
            )
    raise Conflict("The mask could not be saved because of concurrent saves; retry.")


def _save_once(
    db: Session,
    user: User,
    image: Image,
    save_id: str,
    png: bytes,
    digest: str,
    area: int,
    active_ms: int,
    origin: Origin,
    check_queue: bool,
    status_after: str | None,
) -> SaveResult:
    # Row lock: saves of one annotation are serial, so revision numbers never collide and a
    # repeated save_id is seen by the second request once the first has committed.
    locked = (
        select(Annotation)
        .where(Annotation.image_id == image.id, Annotation.annotator_id == user.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    ann = db.scalar(locked)
    if ann is None:
        # the image's row first, as /next locks it: the slot count and the new annotation
        # then agree, and a save and a claim never wait for each other in opposite orders
        lock_images(db, [image.id])
        if check_queue:
            _check_may_start(db, user, image)
        _get_or_create_annotation(db, user, image)
        ann = db.scalar(locked)
        assert ann is not None  # the row _get_or_create_annotation found or made, now locked
    # who holds the image's slots changes with a first save (a claim, or none before), a
    # redo of a returned mask, and a status set by an import
    counts_change = ann.latest_revision == 0 or ann.status == "rejected" or status_after
    existing = db.scalar(
        select(AnnotationRevision).where(
            AnnotationRevision.annotation_id == ann.id, AnnotationRevision.save_id == save_id
        )
    )
    if existing is not None:
        db.commit()
        return SaveResult(ann, existing, created=False)
    if ann.status == "accepted" and status_after is None:
        raise Conflict("This mask was already accepted; it can no longer be changed.")
    now = utcnow()
    rev = AnnotationRevision(
        annotation_id=ann.id,
        revision=ann.latest_revision + 1,
        save_id=save_id,
        mask_format="png",
        mask_bytes=png,
        width=image.width,
        height=image.height,
        area=area,
        sha256=digest,
        active_ms=active_ms,
        source=origin.source,
        provenance=origin.provenance,
        proposal_source=origin.proposal_source,
        created_at=now,
    )
    db.add(rev)
    ann.latest_revision = rev.revision
    ann.active_ms = max(ann.active_ms or 0, active_ms)
    ann.updated_at = now
    if status_after is not None:
        ann.status = status_after
        if status_after in ("submitted", "accepted"):
            ann.submitted_at = ann.submitted_at or now
    elif ann.status in ("submitted", "rejected"):
        ann.status = "draft"
        ann.submitted_at = None
    if counts_change:
        db.flush()
        recount(db, [image.id])
    db.commit()
    return SaveResult(ann, rev, created=True)


def submit(
    db: Session,
    user: User,
    image: Image,
    last_save_id: str | None,
    *,
    confirm_empty: bool = False,
) -> tuple[Annotation, list[str]]:
    """Mark the annotator's saved mask submitted; returns it with its flags ("empty",
    "tiny"). An empty mask is refused (409) unless the annotator confirmed it: it says
    "nothing is salient here", which is rarely what was meant."""
    ann = db.scalar(
        select(Annotation)
        .where(Annotation.image_id == image.id, Annotation.annotator_id == user.id)
        .with_for_update()
    )
    if ann is None or ann.latest_revision == 0:
        raise Conflict("There is no saved mask to submit; draw and save first.")
    if last_save_id and not db.scalar(
        select(AnnotationRevision.id).where(
            AnnotationRevision.annotation_id == ann.id, AnnotationRevision.save_id == last_save_id
        )
    ):
        raise Conflict("The last save has not reached the server yet; try again.")
    if ann.status == "accepted":
        raise Conflict("This mask was already accepted.")
    area = db.scalar(
        select(AnnotationRevision.area).where(
            AnnotationRevision.annotation_id == ann.id,
            AnnotationRevision.revision == ann.latest_revision,
        )
    )
    flags = mask_flags(area or 0, image.width, image.height)
    if "empty" in flags and not confirm_empty:
        db.rollback()
        raise Conflict(
            "The mask is empty: nothing is marked as salient. Draw the region, or confirm "
            "that nothing in the image is salient."
        )
    if ann.status != "submitted":
        ann.status = "submitted"
        ann.submitted_at = utcnow()
        ann.updated_at = ann.submitted_at
    db.commit()
    return ann, flags
