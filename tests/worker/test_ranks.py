"""worker/ranks.py without torchrun: the events file is read line by line (a line still
being written waits), and torchrun's failure report becomes a sentence naming the rank."""

from __future__ import annotations

import json

from worker.ranks import EventFollower, Ranks


def test_events_are_read_whole_lines_only_and_each_once(tmp_path):
    path = tmp_path / "events.jsonl"
    follower = EventFollower(path)
    assert follower.new() == []  # no file yet
    first = {"event": "batch", "point": {"step": 1}}
    second = {"event": "epoch", "epoch": 1, "total": 2, "metrics": {"epoch": 1}}
    text = json.dumps(first) + "\n" + json.dumps(second)
    path.write_text(text[:-5])  # the second line half written
    assert follower.new() == [first]
    with path.open("a") as fh:
        fh.write(text[-5:] + "\n")
    assert follower.new() == [second]
    assert follower.new() == []


REPORT = (
    "Root Cause (first observed failure):\n"
    "  rank      : 1 (local_rank: 1)\n"
    "  exitcode  : -9 (pid: 4)\n"
)


def test_a_failure_names_the_rank_and_how_it_ended():
    env = {"PATH": "/usr/bin:/bin"}
    ranks = Ranks(["sh", "-c", f"printf '{REPORT}'; exit 1"], env=env)
    code = ranks.proc.wait(10)
    assert ranks.stop() == code == 1
    assert ranks.failure(code) == (
        "rank 1 ended with signal SIGKILL; torchrun stopped the other ranks"
    )
    plain = Ranks(["sh", "-c", "exit 3"], env=env)
    plain.proc.wait(10)
    assert plain.stop() == 3
    assert plain.failure(3) == "torchrun ended with exit code 3"
    assert plain.failure(-15) == "torchrun was ended by signal SIGTERM"
