"""GPU leases on one host: a run's worker holds the GPUs it trains on, and no other holds them.

Every GPU a worker may use has a lock file in a folder shared by the host's workers
(GPU_LOCK_DIR): gpu-<name>.lock, held with an exclusive fcntl.flock for as long as a run
trains on that GPU. A run that asks for N GPUs takes N of them at once or none (acquire():
the choice is made under the folder's own lock, so two workers choosing at the same moment
cannot both take part of what they need), and its worker passes them to the training on
exactly those GPUs (CUDA_VISIBLE_DEVICES of the torchrun child, or the in-process device).

The kernel drops a flock when the last file descriptor of it closes, so a holder that dies,
even by SIGKILL, frees its GPUs: there is no stale lease to clean up. A holder may hand its
descriptors to a child process (Lease.fds, subprocess pass_fds): the GPUs then stay leased
until both have ended.

GPU names are those CUDA_VISIBLE_DEVICES uses (indices 0, 1, ... or GPU-<uuid>); all
workers of a host must name them the same way. Standard library only (no torch here).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

POOL_LOCK = ".choose.lock"


def parse_names(text: str | None) -> list[str]:
    """GPU names from a comma-separated list (CUDA_VISIBLE_DEVICES, WORKER_GPUS)."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def visible_names(cuda_visible_devices: str | None, device_count: Callable[[], int]) -> list[str]:
    """The GPUs this process sees, in torch's order (cuda:0 is the first): the names in
    CUDA_VISIBLE_DEVICES when it is set, else 0..device_count()-1."""
    if cuda_visible_devices is not None:
        return parse_names(cuda_visible_devices)[: device_count()]
    return [str(i) for i in range(device_count())]


def usable_names(
    worker_gpus: str, cuda_visible_devices: str | None, device_count: Callable[[], int]
) -> list[str]:
    """The GPUs a worker may lease: WORKER_GPUS when set, else every GPU it sees. On a host
    without CUDA this is empty (nothing to lease) unless WORKER_GPUS names some (tests)."""
    names = parse_names(worker_gpus)
    return names if names else visible_names(cuda_visible_devices, device_count)


def torch_index(name: str, visible: Sequence[str]) -> int:
    """The cuda:<index> under which this process sees the GPU called `name`."""
    if name in visible:
        return list(visible).index(name)
    raise ValueError(
        f"GPU {name} is not one this worker sees ({', '.join(visible) or 'none'}); "
        "WORKER_GPUS must name GPUs within CUDA_VISIBLE_DEVICES"
    )


def _file(lock_dir: Path, name: str) -> Path:
    return lock_dir / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"


@contextmanager
def _choosing(lock_dir: Path) -> Iterator[None]:
    """One chooser at a time on this host (held for the few milliseconds of a choice)."""
    fd = os.open(lock_dir / POOL_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding the file's exclusive lock, or None when another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@dataclass
class Lease:
    """GPUs held by this process until release() (or its exit)."""

    names: list[str]
    fds: list[int] = field(repr=False)

    @property
    def cuda_visible_devices(self) -> str:
        """CUDA_VISIBLE_DEVICES for a child that must see exactly these GPUs."""
        return ",".join(self.names)

    def release(self) -> None:
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(lock_dir: Path, names: Sequence[str], n: int, holder: str = "") -> Lease | None:
    """N of these GPUs, all free, leased at once; None (and nothing held) when fewer than N
    are free. `holder` is written into each lock file, for people reading the folder."""
    if n < 1:
        raise ValueError("a lease is for at least one GPU")
    lock_dir.mkdir(parents=True, exist_ok=True)
    with _choosing(lock_dir):
        taken: list[tuple[str, int]] = []
        for name in names:
            if len(taken) == n:
                break
            fd = _try_lock(_file(lock_dir, name))
            if fd is not None:
                taken.append((name, fd))
        if len(taken) < n:
            for _, fd in taken:
                os.close(fd)
            return None
    note = f"{holder or 'pid'} pid {os.getpid()} on {socket.gethostname()}\n".encode()
    for _, fd in taken:
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
    return Lease([name for name, _ in taken], [fd for _, fd in taken])


def holders(lock_dir: Path, names: Sequence[str]) -> dict[str, str]:
    """The GPUs among these that are leased now, each with what its holder wrote."""
    busy: dict[str, str] = {}
    lock_dir.mkdir(parents=True, exist_ok=True)
    with _choosing(lock_dir):  # a look that never makes a chooser see a free GPU as taken
        for name in names:
            _look(lock_dir, name, busy)
    return busy


def _look(lock_dir: Path, name: str, busy: dict[str, str]) -> None:
    path = _file(lock_dir, name)
    if not path.exists():
        return
    fd = _try_lock(path)
    if fd is not None:
        os.close(fd)
        return
    try:
        busy[name] = path.read_text().strip() or "?"
    except OSError:
        busy[name] = "?"
