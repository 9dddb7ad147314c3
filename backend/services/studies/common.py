"""What the parts of the studies service share: the clock, how epsilons are compared, the
stimuli of a study by their key, a run's image size, and the padding that makes every
stimulus of a study one file size."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import Stimulus, TrainingRun

# (purpose, run id or None, source image id, eps_key(epsilon in grey levels))
StimulusKey = tuple[str, int | None, int, float]


def utcnow() -> datetime:
    return datetime.now(UTC)


def eps_key(eps_255: float) -> float:
    """Epsilons are compared in grey levels rounded to 1e-6 (floats from JSON)."""
    return round(float(eps_255), 6)


def stimuli_by_key(db: Session, study_id: int) -> dict[StimulusKey, Stimulus]:
    rows = db.scalars(select(Stimulus).where(Stimulus.study_id == study_id))
    return {(s.purpose, s.run_id, s.source_image_id, eps_key(s.epsilon * 255)): s for s in rows}


def run_image_size(run: TrainingRun) -> int | None:
    size = (run.config or {}).get("image_size")
    return int(size) if isinstance(size, int | float) else None


# ---- serving stimuli so that their size says nothing ---------------------------------------

PAD_CHUNK = b"spAd"  # ancillary, private, safe to copy: decoders skip it


def pad_png(data: bytes, size: int) -> bytes:
    """Insert a private ancillary chunk before IEND so the file is exactly `size` bytes.

    A perturbed PNG compresses worse than its clean source, so raw file sizes would tell which
    image was changed; every stimulus of a study is served at one size (the largest + 12)."""
    if not data.endswith(b"IEND\xaeB`\x82"):
        raise ValueError("not a PNG ending in IEND")
    pad = size - len(data) - 12
    if pad < 0:
        raise ValueError("the PNG is larger than the padded size")
    body = PAD_CHUNK + bytes(pad)
    chunk = struct.pack(">I", pad) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return data[:-12] + chunk + data[-12:]


def padded_size(max_len: int) -> int:
    return max_len + 12
