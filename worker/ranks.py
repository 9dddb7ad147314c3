"""One run on several processes, as the training task starts and watches it: torchrun running
the library's own command line (worker/sipat/cli.py) on N ranks, in the run's out folder.

    python -m worker.ranks <worker pid> -- python -m torch.distributed.run --standalone
        --nproc-per-node=N -m worker.sipat train --config C --out OUT --no-progress
        --events EVENTS --stop-file STOP

- progress: rank 0 appends every progress point and finished epoch to EVENTS (JSON lines);
  EventFollower hands the task the new ones, which it reports as the in-process path does;
- cancel: the task creates STOP; rank 0 sees it before its next batch and every rank stops at
  that batch (the library's stop_together), the last checkpoint kept. Ranks that are not
  done CANCEL_GRACE_S later are stopped by signal (Ranks.stop);
- a rank that dies: torchrun ends the others and exits non-zero (Ranks.failure says which
  rank and how); torchrun itself killed: its ranks, which run in sessions of their own, are
  killed by the task (Ranks.stop), so that none is left waiting in a collective;
- the worker killed: `python -m worker.ranks` asks the kernel (Linux's PR_SET_PDEATHSIG) to
  send torchrun SIGTERM when the worker dies, and torchrun then ends its ranks.

Standard library only: `python -m worker.ranks` runs before torch is imported.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# a stop asked by file that has not ended the ranks after this long is made by signal
CANCEL_GRACE_S = 60.0
# between SIGTERM (torchrun then ends its ranks) and SIGKILL
KILL_GRACE_S = 20.0
OUTPUT_LINES = 200
_DESCENDANTS_EVERY_S = 1.0
PR_SET_PDEATHSIG = 1


def train_command(
    config: Path, out_dir: Path, processes: int, events: Path, stop_file: Path
) -> list[str]:
    """The command line of an N-process run, tied to this (the worker's) process."""
    return [
        sys.executable,
        "-m",
        "worker.ranks",
        str(os.getpid()),
        "--",
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "worker.sipat",
        "train",
        "--config",
        str(config),
        "--out",
        str(out_dir),
        "--no-progress",
        "--events",
        str(events),
        "--stop-file",
        str(stop_file),
    ]


class EventFollower:
    """The JSON lines appended to a file since the last call (a line still being written waits
    for the next call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (Linux /proc; empty elsewhere)."""
    out = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            out[int(entry.name)] = int(fields[1])
    return out


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, theirs, ...)."""
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _is_rank(pid: int) -> bool:
    """Still one of the library's processes (not a pid reused by something else)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"worker.sipat" in fh.read()
    except OSError:
        return False


class Ranks:
    """torchrun and its ranks, started in a session of their own: one thing to watch and to
    stop. Their merged output goes to on_line, line by line, and its last lines are kept."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES)
        self._on_line = on_line
        self._seen: set[int] = set()  # every process seen below torchrun (its ranks)
        self._looked = 0.0
        self.proc = subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
        self._reader = threading.Thread(target=self._read, name="ranks-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            self.output.append(line)
            if self._on_line is not None:
                try:
                    self._on_line(line)
                except Exception:  # noqa: BLE001 - a lost log line must not stop the reading
                    pass

    def _look(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._looked >= _DESCENDANTS_EVERY_S:
            self._looked = now
            self._seen |= descendants(self.proc.pid)

    def poll(self) -> int | None:
        """torchrun's exit code once it has ended, else None."""
        code = self.proc.poll()
        if code is None:
            self._look()
        return code

    def stop(self, grace_s: float = KILL_GRACE_S) -> int:
        """End torchrun and every rank: SIGTERM first (torchrun ends its ranks), SIGKILL
        after grace_s; then any rank left behind. Returns torchrun's exit code."""
        if self.proc.poll() is None:
            self._look(force=True)
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._look(force=True)
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in sorted(self._seen):  # ranks lead sessions of their own (torchrun's doing)
            if _is_rank(pid):
                _signal_group(pid, signal.SIGKILL)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def failure(self, code: int) -> str:
        """A sentence on how the ranks ended, from torchrun's report when it made one."""
        text = "\n".join(self.output)
        root = text[text.find("Root Cause") :] if "Root Cause" in text else text
        rank = re.search(r"rank\s*:\s*(\d+)", root)
        exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", root)
        if rank and exit_code:
            value = int(exit_code.group(1))
            how = f"signal {_signal_name(-value)}" if value < 0 else f"exit code {value}"
            return f"rank {rank.group(1)} ended with {how}; torchrun stopped the other ranks"
        if code < 0:
            return f"torchrun was ended by signal {_signal_name(-code)}"
        return f"torchrun ended with exit code {code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _exec_tied_to(parent: int, command: list[str]) -> None:
    """Become `command`, to be sent SIGTERM when `parent` dies (Linux; elsewhere, just exec)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the worker died before the tie was made
            sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: python -m worker.ranks WORKER_PID -- COMMAND...")
    _exec_tied_to(int(sys.argv[1]), sys.argv[3:])
