"""The split-half human ceiling on constructed cases whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from backend.services.consensus import (
    AnnotatorMask,
    ImageMasks,
    mean_pairwise_iou,
    spearman_brown,
    split_half,
)


def rows(lo: int, hi: int, size: int = 40) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[lo:hi] = True
    return m


def image(image_id: int, drawn: dict[int, np.ndarray]) -> ImageMasks:
    masks = [AnnotatorMask(i, who, i, 1000, mask) for i, (who, mask) in enumerate(drawn.items())]
    return ImageMasks(image_id, masks)


def test_every_image_counts_in_every_split():
    """Three images drawn by three different pairs of four people: a split of the people over
    the whole dataset covers only some images (A and B on one side leave image 1 out), so an
    unweighted mean over such splits depends on the seed; split per image, the ceiling with two
    annotators per image is the mean of the images' pairwise IoU whatever the splits."""
    a, b, c, d = 1, 2, 3, 4
    images = {
        1: image(1, {a: rows(0, 20), b: rows(10, 30)}),  # IoU 10/30
        2: image(2, {c: rows(0, 20), d: rows(0, 20)}),  # IoU 1
        3: image(3, {a: rows(0, 10), c: rows(0, 40)}),  # IoU 10/40
    }
    expected = np.mean([mean_pairwise_iou([m.mask for m in im.masks]) for im in images.values()])
    assert expected == pytest.approx((1 / 3 + 1 + 1 / 4) / 3)
    for seed in range(5):
        got, _r = split_half(images, splits=7, seed=seed, threshold=0.5)
        assert got == pytest.approx(expected)


def test_images_with_one_annotator_are_left_out_and_none_without_pairs():
    lone = {1: image(1, {1: rows(0, 20)}), 2: image(2, {2: rows(5, 25)})}
    assert split_half(lone, splits=3, seed=0, threshold=0.5) == (None, None)
    lone[3] = image(3, {1: rows(0, 20), 2: rows(0, 20)})
    iou, r = split_half(lone, splits=3, seed=0, threshold=0.5)
    assert iou == 1.0 and r == pytest.approx(1.0)


def test_spearman_brown_raises_the_halves_correlation_to_the_whole_group():
    x, y = rows(0, 30), rows(10, 40)
    images = {1: image(1, {1: x, 2: y})}
    _iou, r = split_half(images, splits=2, seed=0, threshold=0.5)
    expected = np.corrcoef(x.ravel().astype(float), y.ravel().astype(float))[0, 1]
    assert r == pytest.approx(expected)
    assert spearman_brown(r) == pytest.approx(2 * expected / (1 + expected))
    assert spearman_brown(0.5) == pytest.approx(2 / 3) and spearman_brown(1.0) == 1.0
    assert spearman_brown(None) is None and spearman_brown(-1.0) is None


def test_a_half_of_several_people_is_their_consensus():
    """Four annotators on one image, two drawing p and two q: a halving is {p, p} against
    {q, q} (IoU 0) or {p, q} against {p, q} (IoU 1: each half's consensus is 0.5 everywhere,
    binarised at 0.5 to the whole image); 2 of the 6 halvings are of the first kind."""
    p, q = rows(0, 20), rows(20, 40)
    images = {1: image(1, {1: p, 2: p, 3: q, 4: q})}
    got, _ = split_half(images, splits=600, seed=1, threshold=0.5)
    assert got == pytest.approx(4 / 6, abs=0.06)
