"""The demo's simulated participants, as far as every study design treats them alike: a
session opened from the study's link under a Prolific id marked "simulated", consent given,
the device reported, and the session completed. What each observer answers is the caller's
(backend/demo_content.py for the 2AFC study, backend/demo_labels.py for the label study).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

DEVICE = {
    "screen_width": 1920,
    "screen_height": 1080,
    "window_width": 1600,
    "window_height": 1000,
    "device_pixel_ratio": 1,
    "user_agent": "simulated observer (make demo)",
}


class Participant:
    """One simulated participant's session: its trials, the images they show, its answers."""

    def __init__(self, http: httpx.Client, token: str) -> None:
        self.http = http
        self.root = f"/api/participate/{token}"

    def _ok(self, res: httpx.Response) -> httpx.Response:
        res.raise_for_status()
        return res

    def post(self, path: str, body: Any = None) -> Any:
        return self._ok(self.http.post(self.root + path, json=body)).json()

    def trials(self) -> list[dict[str, Any]]:
        return list(self._ok(self.http.get(self.root + "/trials")).json()["data"])

    def image(self, url: str) -> bytes:
        """The bytes of an image a trial names (its URL as the trial gives it)."""
        return self._ok(self.http.get(url)).content

    def answer(self, trial: dict[str, Any], answer: str, rt_ms: float) -> None:
        self.post(f"/trials/{trial['id']}/answer", {"answer": answer, "rt_ms": rt_ms})


@contextmanager
def participant(base: str, study: dict[str, Any], pid: str) -> Iterator[Participant | None]:
    """Participant `pid`'s session on the open `study`, consented and with its device
    reported (None when this id has finished the study before, as after a second `make
    demo`); the session is completed when the block ends without an error."""
    link = study["link_path"].rsplit("/", 1)[-1]
    with httpx.Client(base_url=base, timeout=60) as http:
        r = http.post(f"/api/participate/links/{link}/sessions", json={"prolific_pid": pid})
        if r.status_code >= 400:
            raise RuntimeError(f"simulated participant {pid}: {r.status_code} {r.text[:200]}")
        session = r.json()
        if session["stage"] == "done":
            yield None
            return
        who = Participant(http, session["token"])
        who.post("/consent")
        who.post("/device", DEVICE)
        yield who
        who.post("/complete")
