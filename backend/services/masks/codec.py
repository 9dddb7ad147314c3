"""Binary masks as bytes: decoding what browsers and files send (base64, PNG), compact 1-bit
PNG storage, grey PNGs, the mask's hash, and COCO RLE (encoded and decoded by pycocotools,
with the counts checked first; bounding box).

A mask is a 2-D numpy bool array of shape (height, width); True = salient.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import struct
import warnings
import zlib
from typing import Any

import numpy as np
from PIL import Image as PILImage
from pycocotools import mask as coco_mask

from backend.core.errors import Invalid
from backend.models import AnnotationRevision

# ---------------------------------------------------------------------------- decoding


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("The mask is not valid base64 data.") from exc


def png_size_bound(width: int, height: int) -> int:
    """The most bytes a width x height PNG can need: 16-bit RGBA rows (8 bytes a pixel and a
    filter byte) stored uncompressed (deflate adds 5 bytes per 64 KiB block), with 64 KiB
    for headers and small ancillary chunks."""
    raw = height * (1 + 8 * width)
    return raw + 5 * (raw // 65_535 + 1) + 65_536


def png_to_mask(
    data: bytes,
    *,
    soft: bool = False,
    name: str = "The mask",
    expected_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode a PNG into a binary mask: alpha when the PNG has it, else grey >= 128.

    A strict mask (soft=False) must hold only 0 and 255 in the channel used; soft
    segmentations (CUB-200-2011 style) are binarised at >= 128 instead.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            img: PILImage.Image = PILImage.open(io.BytesIO(data))
            if img.format != "PNG":
                raise Invalid(f"{name} is not a PNG image.")
            if expected_size is not None and img.size != expected_size:
                # checked from the header, before decoding a possibly huge image
                raise Invalid(
                    f"The PNG is {img.width}x{img.height} pixels, not the declared "
                    f"{expected_size[0]}x{expected_size[1]}."
                )
            if img.width * img.height > 64_000_000:
                raise Invalid(f"{name} is too large.")
            if len(data) > png_size_bound(img.width, img.height):
                # more bytes than any PNG of this size needs: padding or a hidden payload
                raise Invalid(
                    f"{name} is {len(data)} bytes, more than a {img.width}x{img.height} PNG "
                    "can need; it is refused."
                )
            img.load()
    except Invalid:
        raise
    except (
        OSError,
        SyntaxError,
        ValueError,
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
    ) as exc:
        raise Invalid(f"{name} could not be decoded as a PNG image.") from exc
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "L")
    if img.mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        channel = img.getchannel("A")
    elif img.mode in ("1", "L", "RGB"):
        channel = img.convert("L")
    elif img.mode in ("I", "I;16", "I;16B", "I;16L"):
        wide = np.asarray(img).astype(np.int64)
        peak = 65535 if img.mode.startswith("I;16") or wide.max(initial=0) > 255 else 255
        channel = PILImage.fromarray((wide * 255 // peak).astype(np.uint8), "L")
    else:
        raise Invalid(f"{name} has an unsupported PNG pixel format ({img.mode}).")
    if not soft:
        # The histogram is computed in C: much cheaper than np.unique on a large mask.
        hist = channel.histogram()
        if sum(hist) != hist[0] + hist[255]:
            distinct = sum(1 for h in hist if h)
            raise Invalid(
                f"{name} is not binary: its pixels must be 0 or 255 "
                f"(found {distinct} distinct values)."
            )
    return np.asarray(channel) >= 128


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# deflate level of stored masks: level 3 gives PNGs of about Pillow's size (level 6 with its
# own settings) in a sixth of Pillow's time on a 512 x 512 brush mask
_MASK_DEFLATE_LEVEL = 3


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def mask_to_png(mask: np.ndarray) -> bytes:
    """A compact 1-bit grey PNG (1 bit per pixel before deflate; white = salient), written
    here rather than by Pillow: every row unfiltered (filter byte 0, which is what suits
    1-bit data), the rows packed by numpy and deflated in one call."""
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    packed = np.packbits(mask, axis=1)
    rows = np.zeros((height, packed.shape[1] + 1), np.uint8)  # column 0: the filter byte
    rows[:, 1:] = packed
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grey, no interlace
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), _MASK_DEFLATE_LEVEL))
        + _png_chunk(b"IEND", b"")
    )


def grey_png(values: np.ndarray) -> bytes:
    """An 8-bit grey PNG of a uint8 array."""
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(values, dtype=np.uint8), mode="L").save(buf, "PNG")
    return buf.getvalue()


def mask_sha256(mask: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(mask, dtype=np.uint8).tobytes()).hexdigest()


def load_revision_mask(rev: AnnotationRevision) -> np.ndarray:
    if rev.mask_format == "rle":
        return rle_decode({"size": [rev.height, rev.width], "counts": rev.mask_bytes.decode()})
    return png_to_mask(rev.mask_bytes)


# ---------------------------------------------------------------------------- COCO RLE


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts: run lengths of the column-major pixels, starting with zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return [int(r) for r in runs]


def string_to_counts(text: str) -> list[int]:
    """The run lengths a COCO counts string holds, checked character by character."""
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        x = 0
        shift = 0
        more = True
        c = 0
        while more:
            if pos >= len(text):
                raise Invalid("The RLE counts string ends in the middle of a number.")
            c = ord(text[pos]) - 48
            if c < 0 or c > 63:
                raise Invalid("The RLE counts string holds an invalid character.")
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
        if c & 0x10:
            x |= -1 << shift
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO's compressed RLE of a mask, by pycocotools (the reference implementation)."""
    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise Invalid("An RLE segmentation needs a size [height, width] and counts.") from exc
    if h <= 0 or w <= 0 or h * w > 64_000_000:
        raise Invalid("An RLE segmentation has an invalid size.")
    if isinstance(counts, str):
        runs = string_to_counts(counts)
    elif isinstance(counts, list) and all(isinstance(c, int) for c in counts):
        runs = counts
    else:
        raise Invalid("RLE counts must be a string or a list of integers.")
    # Checked here, before pycocotools decodes: its decoder refuses counts that overrun the
    # mask but fills a short mask from uninitialised memory.
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise Invalid("The RLE counts do not add up to the mask's size.")
    compressed = coco_mask.frPyObjects({"size": [h, w], "counts": list(runs)}, h, w)
    return np.ascontiguousarray(coco_mask.decode(compressed).astype(bool))


def bbox(mask: np.ndarray) -> list[int]:
    """[x, y, width, height] of the salient pixels (zeros when empty), as COCO."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
