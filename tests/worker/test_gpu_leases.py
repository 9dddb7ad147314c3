"""GPU leases (worker/gpu_leases.py), on the CPU: the lock files are real, the GPUs names.
N leases are taken all or none; they end with release() or the holder's exit, a SIGKILLed
holder's included; holders in separate processes racing for the same GPUs never share one;
a child handed the descriptors keeps the GPUs until it ends too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from worker import gpu_leases as leases

GPUS = ["0", "1", "2", "3"]


def test_n_leases_are_taken_all_or_none(tmp_path):
    held = leases.acquire(tmp_path, ["1"], 1, holder="run 7")
    assert held is not None and held.names == ["1"]
    assert leases.acquire(tmp_path, GPUS, 4) is None  # three free: none taken
    three = leases.acquire(tmp_path, GPUS, 3)
    assert three is not None and three.names == ["0", "2", "3"]
    assert three.cuda_visible_devices == "0,2,3"
    assert leases.acquire(tmp_path, GPUS, 1) is None
    assert set(leases.holders(tmp_path, GPUS)) == set(GPUS)
    assert leases.holders(tmp_path, ["1"])["1"].startswith(f"run 7 pid {os.getpid()}")
    three.release()
    three.release()  # twice is harmless
    held.release()
    assert leases.holders(tmp_path, GPUS) == {}
    with pytest.raises(ValueError):
        leases.acquire(tmp_path, GPUS, 0)


def test_a_lease_ends_with_its_block(tmp_path):
    with leases.acquire(tmp_path, GPUS[:2], 2) as lease:
        assert lease.names == ["0", "1"]
        assert leases.acquire(tmp_path, GPUS[:2], 1) is None
    again = leases.acquire(tmp_path, GPUS[:2], 2)
    assert again is not None
    again.release()


HOLDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from worker import gpu_leases
    lock_dir, n = Path(sys.argv[1]), int(sys.argv[2])
    go, done, out = map(Path, sys.argv[3:6])
    while not go.exists():
        time.sleep(0.005)
    lease = gpu_leases.acquire(lock_dir, sys.argv[6].split(","), n, holder="racer")
    out.write_text(json.dumps(lease.names if lease else None))
    while not done.exists():
        time.sleep(0.01)
    """
)


def _holder(tmp_path: Path, i: int, n: int, gpus: list[str]) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"out-{i}.json"
    args = [tmp_path / "locks", n, tmp_path / "go", tmp_path / "done", out, ",".join(gpus)]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *map(str, args)], cwd=ROOT, env=dict(os.environ)
    )
    return proc, out


def _wait_for(procs: list[tuple[subprocess.Popen, Path]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(out.exists() for _, out in procs):
        assert all(p.poll() is None for p, _ in procs), "a holder ended before it answered"
        assert time.monotonic() < deadline, "the holders did not answer"
        time.sleep(0.02)


@pytest.mark.parametrize(("n", "racers", "winners"), [(1, 6, 4), (2, 5, 2)])
def test_holders_racing_in_processes_never_share_a_gpu(tmp_path, n, racers, winners):
    procs = [_holder(tmp_path, i, n, GPUS) for i in range(racers)]
    time.sleep(1.0)  # every racer started and waiting for the signal
    (tmp_path / "go").touch()
    try:
        _wait_for(procs)
        got = [json.loads(out.read_text()) for _, out in procs]
    finally:
        (tmp_path / "done").touch()
        for proc, _ in procs:
            proc.wait(30)
    taken = [names for names in got if names is not None]
    assert len(taken) == winners, got  # as many as the GPUs allow, all at once or none
    flat = [name for names in taken for name in names]
    assert sorted(flat) == sorted(set(flat)) and len(flat) == winners * n, got
    assert all(len(names) == n for names in taken)


def test_a_killed_holder_frees_its_gpus(tmp_path):
    proc, out = _holder(tmp_path, 0, 2, GPUS[:2])
    (tmp_path / "go").touch()
    _wait_for([(proc, out)])
    assert json.loads(out.read_text()) == ["0", "1"]
    assert leases.acquire(tmp_path / "locks", GPUS[:2], 1) is None
    assert set(leases.holders(tmp_path / "locks", GPUS[:2])) == {"0", "1"}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    freed = leases.acquire(tmp_path / "locks", GPUS[:2], 2)  # no stale lease to clean up
    assert freed is not None and freed.names == ["0", "1"]
    freed.release()


def test_a_child_handed_the_lease_keeps_the_gpus_until_it_ends(tmp_path):
    lease = leases.acquire(tmp_path, GPUS, 2)
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=tuple(lease.fds)
    )
    try:
        lease.release()  # the worker lets go; torchrun (here: the child) still holds them
        assert leases.acquire(tmp_path, GPUS[:2], 1) is None
    finally:
        child.kill()
        child.wait(10)
    again = leases.acquire(tmp_path, GPUS[:2], 2)
    assert again is not None
    again.release()


def test_which_gpus_a_worker_may_lease():
    def count(n: int):
        return lambda: n

    # WORKER_GPUS first, whatever torch sees (on a CPU host too: the tests' leases)
    assert leases.usable_names(" 2, 3 ", None, count(0)) == ["2", "3"]
    # else CUDA_VISIBLE_DEVICES (as many as torch sees), else every GPU by index
    assert leases.usable_names("", "4,5,6", count(2)) == ["4", "5"]
    assert leases.usable_names("", None, count(3)) == ["0", "1", "2"]
    assert leases.usable_names("", "", count(0)) == []
    assert leases.usable_names("", None, count(0)) == []  # no CUDA: nothing to lease
    # the index under which the worker's own process reaches a leased GPU
    assert leases.torch_index("5", leases.visible_names("4,5", count(2))) == 1
    assert leases.torch_index("3", leases.visible_names(None, count(4))) == 3
    with pytest.raises(ValueError, match="WORKER_GPUS"):
        leases.torch_index("7", ["0", "1"])
