"""Consensus of several annotators' binary masks, and how well they agree.

Conventions of salience research (ClickMe, CYBORG): the consensus is the per-pixel mean of the
binary masks; agreement is the mean pairwise IoU and a split-half "human ceiling" (two random
halves of each image's annotators, the agreement of their two consensus maps, averaged over
images and splits; the halves' correlation raised to the whole group's by Spearman-Brown).
IoU of two empty masks is 1 (they agree perfectly on "nothing salient").
"""

from __future__ import annotations

import hashlib
import itertools
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Invalid, NotFound
from backend.models import (
    Annotation,
    AnnotationRevision,
    Dataset,
    Image,
    MaskSet,
    MaskSetItem,
    User,
)
from backend.services.masks.codec import grey_png, load_revision_mask

ALLOWED_STATUSES = ("submitted", "accepted")
# how a mask was made, from its revision's provenance: by hand alone, with the wand, the
# superpixel brush or GrabCut ("assisted"), from a machine proposal (seeded: a proposal can
# anchor what people mark), or not recorded (imports, saves before provenance was recorded)
PROVENANCE_KINDS = ("drawn", "assisted", "proposal", "unrecorded")


def provenance_kind(provenance: dict[str, Any] | None, proposal_source: str | None) -> str:
    """The PROVENANCE_KINDS entry of a revision."""
    if proposal_source or (provenance or {}).get("proposal"):
        return "proposal"
    if provenance is None:
        return "unrecorded"
    return "assisted" if any(v > 0 for k, v in provenance.items() if k != "drawn") else "drawn"


@dataclass
class AnnotatorMask:
    annotation_id: int
    annotator_id: int
    revision_id: int
    active_ms: int
    mask: np.ndarray
    provenance_kind: str = "unrecorded"


@dataclass
class ImageMasks:
    image_id: int
    masks: list[AnnotatorMask] = field(default_factory=list)


def parse_statuses(text: str | list[str] | None) -> list[str]:
    raw = text if isinstance(text, list) else (text or "accepted").split(",")
    statuses = sorted({s.strip() for s in raw if s.strip()})
    if not statuses or any(s not in ALLOWED_STATUSES for s in statuses):
        raise Invalid("statuses must be accepted, submitted or both (comma-separated).")
    return statuses


def load_masks(
    db: Session,
    *,
    dataset_id: int | None = None,
    image_id: int | None = None,
    statuses: list[str],
) -> dict[int, ImageMasks]:
    """The newest revision of every annotation with one of the statuses, by image."""
    query = (
        select(Annotation, AnnotationRevision)
        .join(
            AnnotationRevision,
            (AnnotationRevision.annotation_id == Annotation.id)
            & (AnnotationRevision.revision == Annotation.latest_revision),
        )
        .join(Image, Image.id == Annotation.image_id)
        .where(Annotation.status.in_(statuses))
        .order_by(Annotation.image_id, Annotation.annotator_id)
    )
    if dataset_id is not None:
        query = query.where(Image.dataset_id == dataset_id)
    if image_id is not None:
        query = query.where(Annotation.image_id == image_id)
    out: dict[int, ImageMasks] = {}
    for ann, rev in db.execute(query).all():
        out.setdefault(ann.image_id, ImageMasks(ann.image_id)).masks.append(
            AnnotatorMask(
                ann.id,
                ann.annotator_id,
                rev.id,
                ann.active_ms,
                load_revision_mask(rev),
                provenance_kind(rev.provenance, rev.proposal_source),
            )
        )
    return out


def consensus(masks: list[np.ndarray]) -> np.ndarray:
    """Per-pixel mean of binary masks, in [0, 1]."""
    mean: np.ndarray = np.mean(np.stack([m.astype(np.float64) for m in masks]), axis=0)
    return mean


def consensus_uint8(mean: np.ndarray) -> np.ndarray:
    """0..255 grey levels of a consensus (255 = every annotator marked the pixel)."""
    return np.rint(mean * 255.0).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two maps; None when either is constant."""
    x = a.ravel().astype(np.float64)
    y = b.ravel().astype(np.float64)
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def mean_pairwise_iou(masks: list[np.ndarray]) -> float | None:
    if len(masks) < 2:
        return None
    return float(np.mean([iou(a, b) for a, b in itertools.combinations(masks, 2)]))


def split_half(
    images: dict[int, ImageMasks], *, splits: int, seed: int, threshold: float
) -> tuple[float | None, float | None]:
    """Human ceiling: the agreement of two halves of the people who drew an image. Each
    split divides every image's annotators at random into two halves (of n // 2 and the
    rest), so that every image with two or more annotators counts in every split; the IoU of
    the two binarised consensus maps and the correlation of the two mean maps are averaged
    over all (split, image) pairs: each split weighs as many images as it covers, the same
    for all. (A split of the annotators over the whole dataset covers only the images whose
    annotators fell on both sides; averaging such splits unweighted let a split of one image
    count as much as one of twenty.) The correlation is that of half-size groups: see
    spearman_brown for the whole group's."""
    drawn = [im for im in images.values() if len({m.annotator_id for m in im.masks}) >= 2]
    if not drawn:
        return None, None
    rng = random.Random(seed)
    ious: list[float] = []
    corrs: list[float] = []
    for _ in range(splits):
        for im in drawn:
            people = sorted({m.annotator_id for m in im.masks})
            rng.shuffle(people)
            half = set(people[: len(people) // 2])
            ca = consensus([m.mask for m in im.masks if m.annotator_id in half])
            cb = consensus([m.mask for m in im.masks if m.annotator_id not in half])
            ious.append(iou(ca >= threshold, cb >= threshold))
            r = correlation(ca, cb)
            if r is not None:
                corrs.append(r)
    return (float(np.mean(ious)), float(np.mean(corrs)) if corrs else None)


def spearman_brown(r: float | None) -> float | None:
    """The reliability of the whole group from the correlation of its two halves,
    2r / (1 + r) (Spearman-Brown, doubling the group); None when r is unknown or -1."""
    if r is None or r <= -1:
        return None
    return 2 * r / (1 + r)


def annotator_quality(
    images: dict[int, ImageMasks], threshold: float
) -> dict[int, dict[str, float | None]]:
    """Per annotator: mean IoU with the binarised consensus of the others (leave-one-out),
    median active time, number of masks and mean salient fraction."""
    stats: dict[int, dict[str, list[float]]] = {}
    for im in images.values():
        for m in im.masks:
            s = stats.setdefault(m.annotator_id, {"ious": [], "ms": [], "areas": []})
            s["ms"].append(m.active_ms)
            s["areas"].append(float(m.mask.mean()))
            others = [o.mask for o in im.masks if o.annotator_id != m.annotator_id]
            if others:
                s["ious"].append(iou(m.mask, consensus(others) >= threshold))
    return {
        uid: {
            "num_masks": len(s["ms"]),
            "agreement_with_others": float(np.mean(s["ious"])) if s["ious"] else None,
            "median_active_ms": float(statistics.median(s["ms"])) if s["ms"] else None,
            "mean_area_fraction": float(np.mean(s["areas"])) if s["areas"] else 0.0,
        }
        for uid, s in stats.items()
    }


def agreement_by_provenance(
    images: dict[int, ImageMasks], threshold: float
) -> list[dict[str, Any]]:
    """Agreement split by how the masks were made (PROVENANCE_KINDS, the kinds present): per
    kind, the mean pairwise IoU among masks of that kind on one image (images with two or
    more), and each mask's IoU with the binarised consensus of every other mask of its image."""
    out = []
    for kind in PROVENANCE_KINDS:
        pairwise: list[float] = []
        with_others: list[float] = []
        num_masks = 0
        num_images = 0
        for im in images.values():
            mine = [m for m in im.masks if m.provenance_kind == kind]
            if not mine:
                continue
            num_masks += len(mine)
            num_images += 1
            value = mean_pairwise_iou([m.mask for m in mine])
            if value is not None:
                pairwise.append(value)
            for m in mine:
                others = [o.mask for o in im.masks if o is not m]
                if others:
                    with_others.append(iou(m.mask, consensus(others) >= threshold))
        if num_masks:
            out.append(
                {
                    "kind": kind,
                    "num_masks": num_masks,
                    "num_images": num_images,
                    "mean_pairwise_iou": float(np.mean(pairwise)) if pairwise else None,
                    "agreement_with_others": float(np.mean(with_others)) if with_others else None,
                }
            )
    return out


def dataset_agreement(
    db: Session,
    dataset: Dataset,
    *,
    statuses: list[str],
    threshold: float,
    splits: int,
    seed: int,
) -> dict[str, Any]:
    images = load_masks(db, dataset_id=dataset.id, statuses=statuses)
    per_image = []
    for im in images.values():
        per_image.append(
            {
                "image_id": im.image_id,
                "num_annotators": len(im.masks),
                "mean_pairwise_iou": mean_pairwise_iou([m.mask for m in im.masks]),
            }
        )
    pair_values = [p["mean_pairwise_iou"] for p in per_image if p["mean_pairwise_iou"] is not None]
    sh_iou, sh_r = split_half(images, splits=splits, seed=seed, threshold=threshold)
    quality = annotator_quality(images, threshold)
    names = dict(db.execute(select(User.id, User.username).where(User.id.in_(list(quality)))).all())
    return {
        "dataset_id": dataset.id,
        "statuses": statuses,
        "threshold": threshold,
        "num_images": len(images),
        "mean_pairwise_iou": float(np.mean(pair_values)) if pair_values else None,
        "split_half_iou": sh_iou,
        "split_half_correlation": sh_r,
        "split_half_reliability": spearman_brown(sh_r),
        "splits": splits,
        "seed": seed,
        "images": per_image,
        "by_provenance": agreement_by_provenance(images, threshold),
        "annotators": [
            {"annotator_id": uid, "annotator": names.get(uid, "?"), **q}
            for uid, q in sorted(quality.items())
        ],
    }


def image_consensus(db: Session, image: Image, statuses: list[str]) -> np.ndarray:
    images = load_masks(db, image_id=image.id, statuses=statuses)
    if image.id not in images:
        raise NotFound("This image has no masks with the chosen statuses.")
    return consensus([m.mask for m in images[image.id].masks])


# ---------------------------------------------------------------------------- mask sets


def mask_set_hash(dataset: Dataset, items: list[tuple[int, list[int], np.ndarray]]) -> str:
    """sha256 over the dataset's content hash and the sorted (image id, revision ids, consensus
    pixels) of the items: the same masks frozen twice give the same hash, any change another."""
    digest = hashlib.sha256(f"dataset:{dataset.content_hash}\n".encode())
    for image_id, revision_ids, pixels in sorted(items, key=lambda t: t[0]):
        digest.update(f"{image_id}:{','.join(map(str, sorted(revision_ids)))}:".encode())
        digest.update(f"{pixels.shape[0]}x{pixels.shape[1]}:".encode())
        digest.update(hashlib.sha256(pixels.tobytes()).digest())
        digest.update(b"\n")
    return digest.hexdigest()


def freeze_mask_set(
    db: Session,
    dataset: Dataset,
    *,
    name: str,
    statuses: list[str],
    min_annotators: int,
    min_agreement: float | None,
    created_by: User | None,
    exclude_proposals: bool = False,
) -> tuple[MaskSet, bool]:
    """Freeze the current consensus of the images passing the filter into a MaskSet.

    Returns (mask set, created). Freezing exactly the same masks again returns the existing
    set (its hash is unique), so a run's lineage never has two names for one content
    (`already_frozen` says so). Names are unique per dataset: another content under a name the
    dataset has already is refused (Conflict).
    An image passes with at least min_annotators masks and, when min_agreement is given,
    a mean pairwise IoU at or above it (single-mask images then fail: agreement unknown).
    Empty masks are excluded before the filter; their number is in the set's filter. With
    exclude_proposals, masks seeded by a machine proposal are left out too (counted there).
    """
    images = load_masks(db, dataset_id=dataset.id, statuses=statuses)
    chosen = []
    empty_masks = 0
    proposal_masks = 0
    for im in images.values():
        if exclude_proposals:
            human = [m for m in im.masks if m.provenance_kind != "proposal"]
            proposal_masks += len(im.masks) - len(human)
            im.masks = human
        # An empty mask is left out (it says "nothing is salient", seldom what was meant; the
        # review flags it); the set's filter records how many, so nothing is silent.
        kept = [m for m in im.masks if m.mask.any()]
        empty_masks += len(im.masks) - len(kept)
        im.masks = kept
        masks = [m.mask for m in kept]
        if not masks or len(masks) < min_annotators:
            continue
        agreement = mean_pairwise_iou(masks)
        if min_agreement is not None and (agreement is None or agreement < min_agreement):
            continue
        pixels = consensus_uint8(consensus(masks))
        chosen.append(
            (im.image_id, sorted(m.revision_id for m in im.masks), pixels, len(masks), agreement)
        )
    if not chosen:
        left = [_count(empty_masks, "empty mask")] if empty_masks else []
        left += [f"{_count(proposal_masks, 'mask')} seeded by a proposal"] if proposal_masks else []
        one = len(left) == 1 and empty_masks + proposal_masks == 1  # one mask in all: "was"
        left_out = f" ({' and '.join(left)} {'was' if one else 'were'} left out)" if left else ""
        raise Invalid(f"No image passes the filter{left_out}; nothing was frozen.")
    digest = mask_set_hash(dataset, [(c[0], c[1], c[2]) for c in chosen])
    existing = db.scalar(select(MaskSet).where(MaskSet.hash == digest))
    if existing is not None:
        return existing, False
    _check_name_free(db, dataset, name)
    mask_set = MaskSet(
        dataset_id=dataset.id,
        name=name,
        hash=digest,
        num_images=len(chosen),
        filter={
            "statuses": statuses,
            "min_annotators": min_annotators,
            "min_agreement": min_agreement,
            "empty_masks_excluded": empty_masks,
            **(
                {"exclude_proposals": True, "proposal_masks_excluded": proposal_masks}
                if exclude_proposals
                else {}
            ),
        },
        created_by_id=created_by.id if created_by else None,
    )
    mask_set.items = [
        MaskSetItem(
            image_id=i, revision_ids=r, consensus_png=grey_png(p), num_annotators=n, agreement=a
        )
        for i, r, p, n, a in chosen
    ]
    db.add(mask_set)
    try:
        db.commit()
    except IntegrityError:  # the same content frozen at the same moment by someone else
        db.rollback()
        existing = db.scalar(select(MaskSet).where(MaskSet.hash == digest))
        if existing is None:
            _check_name_free(db, dataset, name)  # the name was taken at the same moment
            raise
        return existing, False
    return mask_set, True


def _count(n: int, noun: str) -> str:
    """A count with its noun, in the singular for 1: "1 empty mask", "3 empty masks"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _check_name_free(db: Session, dataset: Dataset, name: str) -> None:
    taken = db.scalar(
        select(MaskSet.id).where(MaskSet.dataset_id == dataset.id, MaskSet.name == name)
    )
    if taken is not None:
        raise Conflict(
            f"This dataset already has a mask set named \u201c{name}\u201d with other masks; "
            "choose another name."
        )


def already_frozen(mask_set: MaskSet) -> str:
    """The sentence answering a freeze whose masks are frozen already."""
    return (
        f"The same masks are already frozen as \u201c{mask_set.name}\u201d; nothing new was frozen."
    )


def frozen_consensus_png(mask_set: MaskSet, image_id: int) -> bytes:
    """The consensus PNG a mask set froze for this image."""
    for item in mask_set.items:
        if item.image_id == image_id:
            return item.consensus_png
    raise NotFound("This image is not in the mask set.")
