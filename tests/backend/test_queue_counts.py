"""The queue's slot counts (Image.queue_held) under random work of several annotators:
after every step each image's stored count equals an exact count from the annotations, no
claim of /next ever takes an image past annotators_per_image (a redo of a returned mask
may: its annotator gets it back first), and /next says "empty" only when
no image is left that the annotator could still take."""

from __future__ import annotations

import random

import numpy as np
import sqlalchemy as sa

from backend.core.security import hash_password
from backend.models import Annotation, Dataset, Image, Skip, User
from backend.services import reviews
from backend.services.masks import queue


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


def test_slot_counts_stay_exact_under_random_work(db, seeded, users):
    dataset = db.get(Dataset, seeded["dataset_id"])
    dataset.annotators_per_image = 2
    people = [users["annotator"]]
    for name in ("ann2", "ann3", "ann4"):
        person = User(username=name, password_hash=hash_password("pw-" + name), role="annotator")
        db.add(person)
        people.append(person)
    db.commit()
    reviewer = users["researcher"]
    rng = random.Random(7)
    mask = np.zeros((64, 64), bool)
    mask[10:30, 10:30] = True
    for step in range(160):
        user = rng.choice(people)
        action = rng.random()
        mine = db.scalars(
            sa.select(Annotation).where(
                Annotation.annotator_id == user.id, Annotation.image_id.in_(seeded["image_ids"])
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
        for image_id in seeded["image_ids"]:
            stored = db.scalar(sa.select(Image.queue_held).where(Image.id == image_id))
            exact = _holders(db, image_id)
            assert stored == exact, f"step {step}: image {image_id} stores {stored}, has {exact}"
    # then everyone works through what is left: each queue ends, and only when nothing is
    # left to take
    for user in people:
        while (image := queue.next_image(db, user, dataset.id)) is not None:
            queue.save_mask(db, user, image, save_id=f"end-{image.id}", mask=mask, active_ms=1)
            queue.submit(db, user, image, None)
        db.expire_all()
        assert not _could_take(db, user, dataset)
    for image_id in seeded["image_ids"]:
        stored = db.scalar(sa.select(Image.queue_held).where(Image.id == image_id))
        assert stored == _holders(db, image_id) >= dataset.annotators_per_image
