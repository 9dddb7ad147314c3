"""The stream path: files decoded per batch by DataLoader workers, masks aligned, runs
deterministic for a seed whatever the number of workers, resume exact."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from worker.sipat import TrainConfig, TrainingCancelled, train
from worker.sipat import config as config_module
from worker.sipat.data import FileSet, StreamBatches, TensorSet, load_data


def _write_export(root, n=60, size=12, classes=3, seed=0, mark_maps=True):
    """An export (manifest.json, images/, masks/) whose maps are drawn into the images:
    red channel exactly 255 where the map is salient, below elsewhere, so alignment can be
    read back after any crop or flip."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    entries = []
    for i in range(n):
        img = rng.integers(30, 200, size=(size, size, 3), dtype=np.uint8)
        mask = (rng.random((size, size)) < 0.3).astype(np.uint8) * 255
        if mark_maps:
            img[..., 0] = np.where(mask > 0, 255, img[..., 0])
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        entry = {
            "file": f"images/{i}.png",
            "label": i % classes,
            "split": "test" if i % 5 == 0 else "train",
        }
        if i % 4 != 3:  # a quarter without a map
            Image.fromarray(mask).save(root / "masks" / f"{i}.png")
            entry["mask"] = f"masks/{i}.png"
        entries.append(entry)
    manifest = {
        "format": "sipat-dataset/1",
        "dataset": {"name": "t"},
        "mask_set": None,
        "classes": [f"c{k}" for k in range(classes)],
        "images": entries,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def export_dir(tmp_path):
    return _write_export(tmp_path / "export")


def test_both_paths_hold_the_same_images_maps_labels_and_split(export_dir):
    mem = load_data(export_dir, loader="memory")
    stream = load_data(export_dir, loader="stream")
    assert isinstance(mem.train, TensorSet) and isinstance(stream.train, FileSet)
    assert mem.source["loader"] == "memory" and stream.source["loader"] == "stream"
    for a, b in ((mem.train, stream.train.load()), (mem.test, stream.test.load())):
        assert torch.equal(a.images, b.images)
        assert torch.equal(a.maps, b.maps)
        assert torch.equal(a.has_map, b.has_map)
        assert torch.equal(a.labels, b.labels)
    for a, b in zip(mem.channel_stats(), stream.channel_stats(), strict=True):
        assert a == pytest.approx(b)
    assert (mem.in_channels, mem.image_size) == (stream.in_channels, stream.image_size)


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_augmentation_keeps_every_map_aligned(export_dir, workers):
    files = load_data(export_dir, loader="stream").train
    batches = StreamBatches(
        files, 16, augment=True, padding=3, hflip=True, seed=0, workers=workers, device="cpu"
    )
    moved = False
    for epoch in range(2):
        for x, s, has, _ in batches.epoch(epoch, torch.Generator().manual_seed(epoch)):
            red_is_max = (x[:, 0:1] == 1).float()
            # where there is a map, salient pixels are exactly those drawn at 255 (padding
            # is 0 in both); where there is none, the map is all zero
            assert torch.equal(red_is_max[has], s[has])
            assert s[~has].sum() == 0
            moved |= bool((s[has].flatten(1).sum(1) != 0).any())
    assert moved


def _epoch_batches(files, workers, seed, epoch):
    b = StreamBatches(
        files, 16, augment=True, padding=2, hflip=True, seed=seed, workers=workers, device="cpu"
    )
    return list(b.epoch(epoch, torch.Generator().manual_seed(seed)))


def test_stream_batches_depend_on_seed_and_epoch_not_on_the_workers(export_dir):
    files = load_data(export_dir, loader="stream").train
    one = _epoch_batches(files, 0, seed=1, epoch=0)
    two = _epoch_batches(files, 2, seed=1, epoch=0)
    assert len(one) == len(two) == (len(files) + 15) // 16
    for a, b in zip(one, two, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    other_epoch = _epoch_batches(files, 2, seed=1, epoch=1)
    other_seed = _epoch_batches(files, 2, seed=2, epoch=0)
    assert not torch.equal(one[0][0], other_epoch[0][0])
    assert not torch.equal(one[0][0], other_seed[0][0])
    # the batches cover the training set once per epoch
    assert sorted(torch.cat([b[3] for b in one]).tolist()) == sorted(files.labels.tolist())


def _cfg(**kw):
    base = dict(
        method="sip_at",
        epochs=2,
        batch_size=16,
        lr=0.05,
        steps=2,
        eval_subset=8,
        eval_steps=2,
        eval_eps=[8 / 255],
        autoattack_n=0,
        crop_padding=2,
        seed=4,
        data_loader="stream",
        loader_workers=2,
    )
    return TrainConfig(**{**base, **kw})


def test_a_streamed_run_is_deterministic_and_resumes_exactly(export_dir, tmp_path):
    full = train(_cfg(data_dir=str(export_dir)), tmp_path / "full", progress=False)
    assert full["runtime"]["loader"] == "stream" and full["runtime"]["loader_workers"] == 2
    assert full["data"]["loader"] == "stream"
    # the same run with the decoding in the training process: the same numbers
    inline = train(
        _cfg(data_dir=str(export_dir), loader_workers=0), tmp_path / "inline", progress=False
    )
    assert inline["history"] == full["history"] and inline["final"] == full["final"]

    calls = {"n": 0}
    per_epoch = (len(load_data(export_dir, loader="stream").train) + 15) // 16

    def stop_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > per_epoch + 1

    with pytest.raises(TrainingCancelled):
        train(
            _cfg(data_dir=str(export_dir)),
            tmp_path / "cut",
            progress=False,
            should_stop=stop_in_second_epoch,
        )
    resumed = train(_cfg(data_dir=str(export_dir)), tmp_path / "cut", progress=False)
    assert resumed["history"] == full["history"] and resumed["final"] == full["final"]

    # a run trained on one path is not resumed on the other
    with pytest.raises(Exception) as e:
        cut = tmp_path / "cut2"
        calls["n"] = 0
        with pytest.raises(TrainingCancelled):
            train(
                _cfg(data_dir=str(export_dir)),
                cut,
                progress=False,
                should_stop=stop_in_second_epoch,
            )
        train(_cfg(data_dir=str(export_dir), data_loader="memory"), cut, progress=False)
    assert getattr(e.value, "field", None) == "data_loader"


def test_auto_streams_above_the_size_threshold(export_dir, monkeypatch):
    assert not load_data(export_dir, loader="auto").streamed  # 60 small images
    monkeypatch.setattr(config_module, "STREAM_ABOVE_BYTES", 1000)
    assert load_data(export_dir, loader="auto").streamed


def test_stream_path_refuses_images_of_different_sizes_without_image_size(tmp_path):
    root = _write_export(tmp_path / "e", n=10, size=12)
    Image.fromarray(np.zeros((14, 14, 3), np.uint8)).save(root / "images" / "3.png")
    with pytest.raises(ValueError, match="set image_size"):
        load_data(root, loader="stream")
    resized = load_data(root, image_size=16, loader="stream")
    assert resized.image_size == 16 and resized.train.load().images.shape[-1] == 16


def test_a_daemonic_process_streams_without_worker_processes(export_dir):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out = ctx.Queue()

    def child():
        from worker.sipat.data import stream_workers

        out.put(stream_workers(2))

    p = ctx.Process(target=child, daemon=True)
    p.start()
    p.join(30)
    workers, why = out.get(timeout=5)
    assert workers == 0 and "daemonic" in why
