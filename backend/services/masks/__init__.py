"""Binary masks: decoding what browsers and files send, compact storage, COCO RLE
(codec.py), and the annotation queue with saving revisions of an annotation safely under
concurrent (and repeated) requests (queue.py).

A mask is a 2-D numpy bool array of shape (height, width); True = salient. The names below
are re-exported so that `from backend.services import masks` keeps working.
"""

from backend.services.assignments import check_dataset_open
from backend.services.masks.codec import (
    bbox,
    decode_base64,
    grey_png,
    load_revision_mask,
    mask_sha256,
    mask_to_png,
    png_to_mask,
    rle_counts,
    rle_decode,
    rle_encode,
    string_to_counts,
)
from backend.services.masks.queue import (
    CLAIM_TTL,
    TINY_FRACTION,
    SaveResult,
    mask_flags,
    next_for,
    next_image,
    remaining,
    remaining_by_dataset,
    returned_by_dataset,
    save_mask,
    skip_image,
    submit,
)

__all__ = [
    "CLAIM_TTL",
    "TINY_FRACTION",
    "SaveResult",
    "check_dataset_open",
    "mask_flags",
    "bbox",
    "decode_base64",
    "grey_png",
    "load_revision_mask",
    "mask_sha256",
    "mask_to_png",
    "next_for",
    "next_image",
    "png_to_mask",
    "remaining",
    "remaining_by_dataset",
    "returned_by_dataset",
    "rle_counts",
    "rle_decode",
    "rle_encode",
    "save_mask",
    "skip_image",
    "string_to_counts",
    "submit",
]
