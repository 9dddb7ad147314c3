import json

import numpy as np
import torch
from PIL import Image

from worker.sipat.data import augment, keep_map_fraction, load_data


def test_augment_keeps_map_aligned():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 10, 10, generator=g) * 0.5 + 0.25  # never exactly 0
    s = (torch.rand(16, 1, 10, 10, generator=g) < 0.3).float()
    x = torch.where(s.bool().expand_as(x), torch.ones_like(x), x)  # embed the map in the image
    for _ in range(5):
        xa, sa = augment(x, s, padding=3, hflip=True, generator=g)
        assert xa.shape == x.shape and sa.shape == s.shape
        assert torch.equal((xa[:, 0:1] == 1).float(), sa)  # same crop and flip for both
    # the augmentation did move things
    assert not torch.equal(xa, x)


def test_keep_map_fraction_deterministic(tiny_data):
    a = keep_map_fraction(tiny_data.train, 0.25, seed=3)
    b = keep_map_fraction(tiny_data.train, 0.25, seed=3)
    assert torch.equal(a.has_map, b.has_map)
    assert int(a.has_map.sum()) == round(0.25 * len(tiny_data.train))


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_load_export_format(tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for i in range(6):
        _png(tmp_path / f"images/{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
        mask = None
        if i % 2 == 0:
            m = np.zeros((8, 8), dtype=np.uint8)
            m[:4] = 255
            _png(tmp_path / f"masks/{i}.png", m)
            mask = f"masks/{i}.png"
        split = "test" if i >= 4 else "train"
        images.append(
            {"id": i, "file": f"images/{i}.png", "label": i % 2, "split": split, "mask": mask}
        )
    manifest = {
        "format": "sipat-dataset/1",
        "dataset": "toy",
        "classes": ["a", "b"],
        "mask_set": {"id": 1, "hash": "x"},
        "images": images,
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    d = load_data(tmp_path)
    assert len(d.train) == 4 and len(d.test) == 2 and d.classes == ["a", "b"]
    assert d.train.has_map.tolist() == [True, False, True, False]
    assert d.train.maps[0, 0, :4].min() == 255 and d.train.maps[0, 0, 4:].max() == 0
    d16 = load_data(tmp_path, image_size=16)
    assert d16.train.images.shape == (4, 3, 16, 16) and d16.train.maps.shape == (4, 1, 16, 16)


def test_load_image_folder_split_by_seed(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        for i in range(5):
            _png(tmp_path / c / f"{i}.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
    d = load_data(tmp_path, test_fraction=0.2, seed=1)
    assert d.classes == ["cat", "dog"] and d.in_channels == 1
    assert len(d.train) == 8 and len(d.test) == 2
    assert torch.equal(load_data(tmp_path, test_fraction=0.2, seed=1).test.labels, d.test.labels)


def test_spread_subset_covers_the_classes_in_proportion_and_is_fixed():
    from worker.sipat.data import TensorSet

    # a test set sorted by class, as an ImageFolder tree or an export gives it
    counts = [30, 30, 60, 10, 70]
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    n = len(labels)
    ts = TensorSet(
        torch.arange(n, dtype=torch.int64).view(n, 1, 1, 1).to(torch.uint8),
        torch.zeros(n, 1, 1, 1, dtype=torch.uint8),
        torch.zeros(n, dtype=torch.bool),
        labels,
    )
    torch.manual_seed(123)  # the run's own randomness must not change the subset
    sub = ts.spread_subset(40)
    torch.manual_seed(456)
    again = ts.spread_subset(40)
    assert torch.equal(sub.labels, again.labels) and torch.equal(sub.images, again.images)
    per_class = torch.bincount(sub.labels, minlength=len(counts)).tolist()
    assert sum(per_class) == 40
    for got, c in zip(per_class, counts, strict=True):
        assert abs(got - 40 * c / n) <= 1, per_class  # proportional, not the first classes
    assert len(set(sub.images.flatten().tolist())) == 40  # no image twice
    assert ts.spread_subset(0) is ts and ts.spread_subset(n + 5) is ts
