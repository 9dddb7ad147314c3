"""The test split of a tree without its own: a share of every class, the same every time."""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import pytest

from backend.services.datasets import stratified_test_ids
from tests.conftest import make_png, make_zip


def _hashes(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [hashlib.sha256(rng.randbytes(8)).hexdigest() for _ in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_each_class_gives_its_share_and_the_total_is_exact(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(1, 30) for _ in range(rng.randint(1, 12))]
    classes = [f"c{k}" for k, n in enumerate(sizes) for _ in range(n)]
    rng.shuffle(classes)
    hashes = _hashes(len(classes), seed)
    share = rng.choice([0.0, 0.1, 0.2, 0.25, 0.5, 0.9])
    test = stratified_test_ids(classes, hashes, share)
    assert len(test) == round(len(classes) * share)
    per_class = Counter(classes[i] for i in test)
    for k, n in enumerate(sizes):
        # the whole part of its share, or one more
        assert int(n * share) <= per_class[f"c{k}"] <= int(n * share) + 1
    # the same files split the same way, in any order
    order = list(range(len(classes)))
    rng.shuffle(order)
    again = stratified_test_ids([classes[i] for i in order], [hashes[i] for i in order], share)
    assert {order[i] for i in again} == test


def test_twenty_classes_of_one_photo_hold_out_five():
    """imagenet-photos had 2 test images of 20 by coin flips at 0.25; now exactly 5."""
    classes = [f"class{k}" for k in range(20)]
    assert len(stratified_test_ids(classes, _hashes(20, 1), 0.25)) == 5


def test_the_import_route_takes_the_share_and_stratifies(client, auth):
    files = {
        f"{c}/{i}.png": make_png(8, 8, (40 * k, 9 * i, 100))
        for k, (c, n) in enumerate((("ant", 10), ("bee", 4), ("cow", 6)))
        for i in range(n)
    }
    r = client.post(
        "/api/datasets/import",
        headers=auth["researcher"],
        data={"name": "three kinds", "test_fraction": "0.5"},
        files={"file": ("t.zip", make_zip(files), "application/zip")},
    )
    assert r.status_code == 201, r.text
    ds = r.json()["id"]
    assert client.get(f"/api/datasets/{ds}", headers=auth["researcher"]).json()["splits"] == {
        "train": 10,
        "test": 10,
    }
    images = client.get(
        f"/api/datasets/{ds}/images", headers=auth["researcher"], params={"limit": 100}
    ).json()["data"]
    tested = Counter(i["class_name"] for i in images if i["split"] == "test")
    assert tested == {"ant": 5, "bee": 2, "cow": 3}
    r = client.post(
        "/api/datasets/import",
        headers=auth["researcher"],
        data={"name": "too much", "test_fraction": "0.95"},
        files={"file": ("t.zip", make_zip(files), "application/zip")},
    )
    assert r.status_code == 422 and "test_fraction" in r.text
