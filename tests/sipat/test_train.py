import pytest

from worker.sipat import TrainConfig, TrainingCancelled, train
from worker.sipat.checkpoint import load_model_from_checkpoint


def _cfg(**kw):
    kw.setdefault("autoattack_n", 8)  # every run ends with AutoAttack: on 8 images, not 32
    return TrainConfig(
        method="pgd_at",
        epochs=2,
        batch_size=32,
        lr=0.05,
        steps=2,
        eval_subset=16,
        eval_steps=2,
        eval_eps=[8 / 255],
        crop_padding=1,
        schedule="step",
        step_size=1,
        gamma=0.5,
        seed=5,
        **kw,
    )


def _measured(final):
    """The final evaluation without the one thing that may differ: how long AutoAttack took."""
    aa = {k: v for k, v in final["autoattack"].items() if k != "seconds"}
    assert aa["n"] > 0 and set(aa["after"]) == {"apgd-ce", "apgd-t", "fab-t", "square"}
    return {**final, "autoattack": aa}


# 1.5: the eps ramp spans the cut. The final evaluation's AutoAttack is compared once (at
# 0.0); at 1.5 the runs skip it, their weights compared through the history and final PGD.
@pytest.mark.parametrize(("warmup", "aa_images"), [(0.0, 8), (1.5, 0)])
def test_resume_equals_uninterrupted(warmup, aa_images, tiny_data, tmp_path):
    def cfg():
        return _cfg(eps_warmup_epochs=warmup, autoattack_n=aa_images)

    full = train(cfg(), tmp_path / "full", data=tiny_data, progress=False)

    calls = {"n": 0}
    batches_per_epoch = (len(tiny_data.train) + 31) // 32

    def stop_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > batches_per_epoch + 1  # one batch into epoch 2

    with pytest.raises(TrainingCancelled):
        train(
            cfg(),
            tmp_path / "cut",
            data=tiny_data,
            progress=False,
            should_stop=stop_in_second_epoch,
        )
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = train(cfg(), tmp_path / "cut", data=tiny_data, progress=False)
    assert resumed["history"] == full["history"]
    if aa_images:
        assert _measured(resumed["final"]) == _measured(full["final"])
    else:
        assert "autoattack" not in full["final"]
        assert resumed["final"] == full["final"]


def test_other_config_in_same_dir_refused(tiny_data, tmp_path):
    from worker.sipat import ConfigError

    train(
        TrainConfig(**{**_cfg().to_dict(), "epochs": 1, "method": "standard", "autoattack_n": 0}),
        tmp_path,
        data=tiny_data,
        progress=False,
    )
    with pytest.raises(ConfigError) as e:
        train(
            TrainConfig(
                **{
                    **_cfg().to_dict(),
                    "epochs": 1,
                    "method": "standard",
                    "lr": 0.01,
                    "autoattack_n": 0,
                }
            ),
            tmp_path,
            data=tiny_data,
            progress=False,
        )
    assert e.value.field == "out_dir"


def test_load_model_from_checkpoint_eval_mode(tiny_data, tmp_path):
    train(
        TrainConfig(
            method="standard",
            epochs=1,
            batch_size=32,
            eval_subset=8,
            eval_steps=1,
            eval_eps=[],
            autoattack_n=0,
        ),
        tmp_path,
        data=tiny_data,
        progress=False,
    )
    model = load_model_from_checkpoint(tmp_path / "final.pt")
    assert not model.training


def test_public_train_is_the_function_even_after_submodule_import():
    import worker.sipat
    import worker.sipat.train
    from worker.sipat import train as public_train

    assert callable(public_train) and worker.sipat.train is public_train


def test_cpu_allocator_tuning_applies_once_on_glibc():
    import platform

    from worker.sipat import runtime

    applied = runtime.tune_cpu_allocator()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied is True  # the development and CI machines run glibc
    assert runtime.tune_cpu_allocator() is applied  # idempotent, decided once per process
