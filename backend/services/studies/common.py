"""What the parts of the studies service share: the clock, how epsilons are compared, the
stimuli of a study by their key, a run's image size, and the one PNG encoding of stimuli
(uncompressed, so that two stimuli of one size differ in their pixels only)."""

from __future__ import annotations

import io
import secrets
import struct
import zlib
from datetime import UTC, datetime

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import Stimulus, TrainingRun

# (purpose, run id or None, source image id, eps_key(epsilon in grey levels))
StimulusKey = tuple[str, int | None, int, float]


def public_id(nbytes: int) -> str:
    """A random URL-safe id that never starts with "-": an export's cell that starts with
    -, +, = or @ is escaped against formula injection, and an id must read back as it was
    given (a trial's id in trials.csv is the key a researcher joins on)."""
    while True:
        token = secrets.token_urlsafe(nbytes)
        if not token.startswith("-"):
            return token


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


# ---- stimuli as bytes that say nothing but their pixels ------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# the most a stored (uncompressed) deflate block may hold
_STORED_BLOCK = 0xFFFF
# zlib header: deflate, 32 KiB window, "fastest" level, no dictionary ((0x78 << 8 | 0x01) % 31 == 0)
_ZLIB_HEADER = b"\x78\x01"


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _channels(pixels: np.ndarray) -> int:
    if pixels.dtype != np.uint8 or not (
        pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)
    ):
        raise ValueError("stimulus pixels must be H x W or H x W x 3 uint8")
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError("stimulus pixels must not be empty")
    return 1 if pixels.ndim == 2 else 3


def stored_png(pixels: np.ndarray) -> bytes:
    """A PNG of H x W (grey) or H x W x 3 (RGB) uint8 pixels that is the same length, and the
    same bytes outside the pixel data, for every image of one size and mode.

    The signature, IHDR (8 bits, no interlace), one IDAT holding a zlib stream of *stored*
    (uncompressed) deflate blocks of at most 65535 bytes, each row with filter 0, and IEND:
    no ancillary chunk, nothing that depends on how well the pixels compress. The only bytes
    that differ between two images of one size are the pixels, the stream's Adler-32 and the
    IDAT's CRC (both functions of the pixels)."""
    channels = _channels(pixels)
    h, w = int(pixels.shape[0]), int(pixels.shape[1])
    rows = np.ascontiguousarray(pixels).reshape(h, w * channels)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    parts = [_ZLIB_HEADER]
    for start in range(0, len(raw), _STORED_BLOCK):
        block = raw[start : start + _STORED_BLOCK]
        final = 1 if start + _STORED_BLOCK >= len(raw) else 0
        n = len(block)
        parts.append(struct.pack("<BHH", final, n, n ^ 0xFFFF) + block)
    parts.append(struct.pack(">I", zlib.adler32(raw) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0 if channels == 1 else 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def stored_png_size(width: int, height: int, channels: int) -> int:
    """The byte length of `stored_png` of a width x height image with 1 or 3 channels."""
    raw = height * (1 + width * channels)
    blocks = max(1, -(-raw // _STORED_BLOCK))
    return len(PNG_SIGNATURE) + (12 + 13) + (12 + 2 + 5 * blocks + raw + 4) + 12


def png_pixels(data: bytes) -> np.ndarray:
    """The pixels of a stimulus PNG: H x W uint8 when it is grey ("L"), else H x W x 3 (RGB)."""
    with PILImage.open(io.BytesIO(data)) as im:
        mode = "L" if im.mode == "L" else "RGB"
        return np.asarray(im.convert(mode), dtype=np.uint8)


def served_png(data: bytes) -> bytes:
    """What a participant is sent for a stored stimulus: its pixels as `stored_png`, whatever
    encoding the stored file has (stimuli made before stored_png were compressed)."""
    return stored_png(png_pixels(data))
