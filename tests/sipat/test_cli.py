import json
import subprocess
import sys

from conftest import ROOT


def _run(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "worker.sipat", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bad_config_exits_2_naming_field(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"method": "pgd_at", "steps": 0, "data_dir": str(tmp_path)}))
    r = _run("train", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert r.returncode == 2
    assert "steps" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _run(
        "train",
        "--config",
        str(cfg),
        "--set",
        "steps=2",
        "--set",
        "epz=0.1",
        "--out",
        str(tmp_path / "r"),
    )
    assert r.returncode == 2 and "epz" in r.stderr


def test_train_and_evaluate_from_export_dir(tmp_path, capsys):
    from worker.sipat.cli import main

    def _run(*args):  # in-process: the same main() as python -m, without re-importing torch
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    data = tmp_path / "data"
    assert (
        _run(
            "make-benchmark-data",
            "--out",
            str(data),
            "--n-train",
            "64",
            "--n-test",
            "32",
            "--image-size",
            "12",
        ).returncode
        == 0
    )
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
        "--set",
        "method=sip_at",
        "--set",
        "epochs=1",
        "--set",
        "steps=1",
        "--set",
        "batch_size=32",
        "--set",
        "eval_subset=8",
        "--set",
        "eval_steps=1",
        "--set",
        "eval_eps=[0.03]",
    ]
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "metrics.json").exists()
    r = _run(
        "evaluate",
        "--checkpoint",
        str(tmp_path / "run" / "final.pt"),
        "--eps",
        "8/255",
        "--subset",
        "8",
        "--autoattack-n",
        "8",
        "--restarts",
        "2",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert "pgd_accuracy" in report and report["pgd"]["restarts"] == 2
    assert report["autoattack"]["n"] == 8 and report["autoattack"]["eps"] == 8 / 255
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert first["final"]["autoattack"]["n"] == 32  # every run ends with AutoAttack
    r = _run(*args)  # the same command again: the run is complete, nothing retrained
    assert r.returncode == 0
    # other evaluation settings: the final model is evaluated again, nothing is retrained
    r = _run(*args, "--set", "eval_restarts=2", "--set", "autoattack_n=4")
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert again["history"] == first["history"]
    assert again["final"]["pgd"]["restarts"] == 2 and again["final"]["autoattack"]["n"] == 4


def test_sweep_trains_every_arm_and_seed_and_reads_them_back(tmp_path, capsys):
    """`sweep` without --results-only trains each arm and seed on a named benchmark (the
    settings over it as given), then prints the table from the runs' results files: each run
    with its arm's value and its seed, the baseline paired with the arm by seed."""
    from worker.sipat.cli import main

    quick = ["epochs=1", "eps_warmup_epochs=0", "eval_subset=16", "eval_steps=2"]
    quick += ["eval_restarts=1", "autoattack_n=0", "epoch_eval_steps=1", "method=sip_at"]
    argv = ["sweep", "--dataset", "salience", "--set", "mask_fraction=0.5", "--seeds", "0,1"]
    argv += ["--baseline", "method=pgd_at", "--out", str(tmp_path), "--no-progress", "--json"]
    for item in quick:
        argv += ["--base", item]
    assert main(argv) == 0
    table = json.loads(capsys.readouterr().out)
    runs = sorted((r["arm"], r["seed"], r["state"]) for r in table["runs"])
    assert runs == [(a, s, "succeeded") for a in ("baseline", "mask_fraction=0.5") for s in (0, 1)]
    for folder in tmp_path.glob("*/seed*"):
        config = json.loads((folder / "metrics.json").read_text())["config"]
        assert config["seed"] == int(folder.name.removeprefix("seed")) and config["epochs"] == 1
        if folder.parent.name == "baseline":
            assert config["method"] == "pgd_at"
        else:
            assert config["method"] == "sip_at" and config["mask_fraction"] == 0.5
    (arm,) = [a for a in table["arms"] if not a["baseline"]]
    paired = arm["paired"]["clean_accuracy"]
    assert paired["n"] == 2 and paired["seeds"] == [0, 1]
    # read again from the files alone: the same table
    assert main([*argv, "--results-only"]) == 0
    assert json.loads(capsys.readouterr().out) == table
