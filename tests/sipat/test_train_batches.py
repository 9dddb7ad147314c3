"""train()'s per-batch points (on_batch), the live curves' source: every few batches and at
each epoch's end, covering every image exactly once, their image-weighted means equal to the
epoch's own train loss and accuracy."""

import pytest

from worker.sipat import TrainConfig, train


def _cfg(**kw):
    return TrainConfig(
        method="pgd_at", epochs=2, batch_size=8, lr=0.05, steps=1, eval_subset=8, eval_steps=1,
        epoch_eval_steps=1, eval_eps=[8 / 255], autoattack_n=0, schedule="none", seed=3, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("every", [None, 3])
def test_points_cover_each_epoch_and_average_to_its_figures(tiny_data, tmp_path, every):
    points: list[dict] = []
    result = train(
        _cfg(), tmp_path, data=tiny_data, on_batch=points.append, batch_every=every, progress=False
    )
    n = (len(tiny_data.train) + 7) // 8
    assert result["batches_per_epoch"] == n
    assert all(p["batches"] == n for p in points)
    steps = [p["step"] for p in points]
    assert steps == sorted(set(steps)) and steps[-1] == 2 * n
    for epoch, metrics in enumerate(result["history"], start=1):
        mine = [p for p in points if p["epoch"] == epoch]
        assert mine[-1]["step"] == epoch * n and mine[-1]["batch"] == n  # the epoch's end
        if every:
            assert [p["batch"] for p in mine[:-1]] == list(range(every, n, every))
        assert sum(p["images"] for p in mine) == len(tiny_data.train)
        images = sum(p["images"] for p in mine)
        loss = sum(p["loss"] * p["images"] for p in mine) / images
        accuracy = sum(p["accuracy"] * p["images"] for p in mine) / images
        assert loss == pytest.approx(metrics["train_loss"], rel=1e-9)
        assert accuracy == pytest.approx(metrics["train_accuracy"], rel=1e-9)
    assert all(p["images_per_s"] > 0 and p["memory_bytes"] > 0 and p["device"] for p in points)
