"""The queue's slot counts (Image.queue_held) under random work of several annotators:
after every step each image's stored count equals an exact count from the annotations, no
claim of /next ever takes an image past annotators_per_image (a redo of a returned mask
may: its annotator gets it back first), and /next says "empty" only when
no image is left that the annotator could still take."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.core.security import hash_password
from backend.models import (
    Annotation,
    Dataset,
    DatasetClass,
    Image,
    QueueCount,
    QueueTouched,
    Skip,
    User,
)
from backend.services import reviews
from backend.services.masks import queue
from tests.conftest import run_migrations


def _holders(db, image_id: int) -> int:
    """Slot holders counted from scratch, in Python: not rejected, not skipped by their
    annotator, not an import account's, saved or a claim (the test makes no claim lapse)."""
    n = 0
    for ann in db.scalars(sa.select(Annotation).where(Annotation.image_id == image_id)):
        skipped = db.scalar(
            sa.select(Skip.id).where(
                Skip.image_id == image_id, Skip.annotator_id == ann.annotator_id
            )
        )
        account = db.get(User, ann.annotator_id)
        if ann.status != "rejected" and not skipped and not account.username.startswith("import:"):
            n += 1
    return n


def _could_take(db, user: User, dataset: Dataset) -> bool:
    for image in db.scalars(sa.select(Image).where(Image.dataset_id == dataset.id)):
        touched = db.scalar(
            sa.select(Annotation.id).where(
                Annotation.image_id == image.id, Annotation.annotator_id == user.id
            )
        ) or db.scalar(
            sa.select(Skip.id).where(Skip.image_id == image.id, Skip.annotator_id == user.id)
        )
        if not touched and _holders(db, image.id) < dataset.annotators_per_image:
            return True
    return False


def _check_counters(db, dataset: Dataset, people: list[User], where: str) -> None:
    """The stored counters against a count from scratch, and each annotator's remaining."""
    held_of = {
        i: (d, h) for i, d, h in db.execute(sa.select(Image.id, Image.dataset_id, Image.queue_held))
    }
    stored = {
        (d, h): n
        for d, h, n in db.execute(
            sa.select(QueueCount.dataset_id, QueueCount.held, QueueCount.images)
        )
        if n
    }
    assert stored == dict(Counter(held_of.values())), where
    pairs = {(a, i) for a, i in db.execute(sa.select(Annotation.annotator_id, Annotation.image_id))}
    pairs |= {(a, i) for a, i in db.execute(sa.select(Skip.annotator_id, Skip.image_id))}
    stored = {
        (a, d, h): n
        for a, d, h, n in db.execute(
            sa.select(
                QueueTouched.annotator_id,
                QueueTouched.dataset_id,
                QueueTouched.held,
                QueueTouched.images,
            )
        )
        if n
    }
    assert stored == dict(Counter((a, *held_of[i]) for a, i in pairs)), where
    k = dataset.annotators_per_image
    for user in people:
        could_take = sum(
            1
            for i, (d, h) in held_of.items()
            if d == dataset.id and h < k and (user.id, i) not in pairs
        )
        skipped = {
            i for a, i in db.execute(sa.select(Skip.annotator_id, Skip.image_id)) if a == user.id
        }
        pending = sum(
            1
            for ann in db.scalars(sa.select(Annotation).where(Annotation.annotator_id == user.id))
            if ann.status in ("draft", "rejected")
            and ann.image_id not in skipped
            and held_of[ann.image_id][0] == dataset.id
        )
        assert queue.remaining(db, user, dataset.id) == could_take + pending, (
            f"{where} {user.username}"
        )


def test_slot_counts_stay_exact_under_random_work(db, seeded, users):
    dataset = db.get(Dataset, seeded["dataset_id"])
    dataset.annotators_per_image = 2
    people = [users["annotator"]]
    for name in ("ann2", "ann3", "ann4"):
        person = User(username=name, password_hash=hash_password("pw-" + name), role="annotator")
        db.add(person)
        people.append(person)
    db.commit()
    _random_work(db, dataset, seeded["image_ids"], people, users["researcher"])


def test_slot_counts_and_counters_stay_exact_on_sqlite(tmp_path):
    """The same random work on SQLite: its triggers are row triggers of their own."""
    from backend.db import make_engine

    url = f"sqlite:///{tmp_path / 'queue.db'}"
    run_migrations(url)
    engine = make_engine(url)
    with Session(engine) as db:
        pw = hash_password("pw")
        reviewer = User(username="boss", password_hash=pw, role="researcher")
        people = [User(username=f"a{i}", password_hash=pw, role="annotator") for i in range(4)]
        db.add_all([reviewer, *people])
        dataset = Dataset(name="d", annotators_per_image=1)
        db.add(dataset)
        db.flush()
        cls = DatasetClass(dataset_id=dataset.id, name="c", index=0)
        db.add(cls)
        db.flush()
        images = [
            Image(dataset_id=dataset.id, class_id=cls.id, filename=f"{i}.png",
                  storage_key=f"{i}.png", width=64, height=64, mode="L", sha256=f"{i:064x}")
            for i in range(8)
        ]  # fmt: skip
        db.add_all(images)
        db.commit()
        dataset.annotators_per_image = 2  # after the images: the counters need no recount
        db.commit()
        _random_work(db, dataset, [i.id for i in images], people, reviewer)
    engine.dispose()


def _random_work(db, dataset: Dataset, image_ids: list[int], people: list[User], reviewer: User):
    _check_counters(db, dataset, people, "before")
    rng = random.Random(7)
    mask = np.zeros((64, 64), bool)
    mask[10:30, 10:30] = True
    for step in range(160):
        user = rng.choice(people)
        action = rng.random()
        mine = db.scalars(
            sa.select(Annotation).where(
                Annotation.annotator_id == user.id, Annotation.image_id.in_(image_ids)
            )
        ).all()
        if action < 0.45 or not mine:
            image = queue.next_image(db, user, dataset.id)
            if image is not None and image.id not in {a.image_id for a in mine}:
                assert _holders(db, image.id) <= dataset.annotators_per_image, f"step {step}"
            if image is None:
                assert not _could_take(db, user, dataset), f"step {step}: empty but not done"
        else:
            ann = rng.choice(mine)
            image = db.get(Image, ann.image_id)
            if ann.status in ("draft", "rejected") and action < 0.75:
                queue.save_mask(db, user, image, save_id=f"s{step}", mask=mask, active_ms=10)
                queue.submit(db, user, image, None)
            elif ann.status == "submitted":
                decision = "reject" if action < 0.85 else "accept"
                reviews.decide(db, reviewer, ann.id, decision, "redo the edge")
            elif ann.status == "draft":
                queue.skip_image(db, user, image, "unclear")
        db.expire_all()
        for image_id in image_ids:
            stored = db.scalar(sa.select(Image.queue_held).where(Image.id == image_id))
            exact = _holders(db, image_id)
            assert stored == exact, f"step {step}: image {image_id} stores {stored}, has {exact}"
        _check_counters(db, dataset, people, f"step {step}")
    # then everyone works through what is left: each queue ends, and only when nothing is
    # left to take
    for user in people:
        while (image := queue.next_image(db, user, dataset.id)) is not None:
            queue.save_mask(db, user, image, save_id=f"end-{image.id}", mask=mask, active_ms=1)
            queue.submit(db, user, image, None)
        db.expire_all()
        assert not _could_take(db, user, dataset)
        _check_counters(db, dataset, people, f"{user.username} done")
    # every image has its annotators, or every annotator touched it (skipped it, say)
    for image_id in image_ids:
        stored = db.scalar(sa.select(Image.queue_held).where(Image.id == image_id))
        assert stored == _holders(db, image_id)
        touched_by = set(
            db.scalars(sa.select(Annotation.annotator_id).where(Annotation.image_id == image_id))
        ) | set(db.scalars(sa.select(Skip.annotator_id).where(Skip.image_id == image_id)))
        assert stored >= dataset.annotators_per_image or {p.id for p in people} <= touched_by


def test_migration_0016_counts_what_is_there(tmp_path):
    """The counters' migration fills them from the images, annotations and skips already
    there (a claim, a skip beside a mask, a skip alone), and the triggers take over."""
    from alembic import command
    from alembic.config import Config

    from backend.db import make_engine
    from tests.conftest import ROOT

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "0015")
    engine = make_engine(url)
    with Session(engine) as db:
        people = [User(username=f"a{i}", password_hash="x", role="annotator") for i in range(2)]
        dataset = Dataset(name="d", annotators_per_image=2)
        db.add_all([*people, dataset])
        db.flush()
        cls = DatasetClass(dataset_id=dataset.id, name="c", index=0)
        db.add(cls)
        db.flush()
        images = [
            Image(dataset_id=dataset.id, class_id=cls.id, filename=f"{i}.png", storage_key="k",
                  width=8, height=8, mode="L", sha256="0", queue_held=held)
            for i, held in enumerate((0, 1, 2, 1))
        ]  # fmt: skip
        db.add_all(images)
        db.flush()
        a, b = people
        db.add_all(
            [
                Annotation(image_id=images[1].id, annotator_id=a.id, status="submitted"),
                Annotation(image_id=images[2].id, annotator_id=a.id, status="accepted"),
                Annotation(image_id=images[2].id, annotator_id=b.id, status="draft"),
                Annotation(image_id=images[3].id, annotator_id=b.id, status="draft"),
                Skip(image_id=images[3].id, annotator_id=b.id, reason="r"),
                Skip(image_id=images[0].id, annotator_id=a.id, reason="r"),
            ]
        )
        ids = (a.id, b.id, dataset.id)
        db.commit()
    command.upgrade(cfg, "head")
    with Session(engine) as db:
        a, b = db.get(User, ids[0]), db.get(User, ids[1])
        dataset = db.get(Dataset, ids[2])
        counts = dict(db.execute(sa.select(QueueCount.held, QueueCount.images)).all())
        assert counts == {0: 1, 1: 2, 2: 1}
        touched = {
            (u, h): n
            for u, h, n in db.execute(
                sa.select(QueueTouched.annotator_id, QueueTouched.held, QueueTouched.images)
            )
        }
        assert touched == {(a.id, 0): 1, (a.id, 1): 1, (a.id, 2): 1, (b.id, 2): 1, (b.id, 1): 1}
        _check_counters(db, dataset, [a, b], "after the migration")
        # a: image 3 (b's skipped draft) is still to take; b: images 0 and 1, and the draft
        # of image 2 (its slots all held, but b's own mask to finish)
        assert queue.remaining(db, a, dataset.id) == 1
        assert queue.remaining(db, b, dataset.id) == 3
    engine.dispose()
