"""The annotators' drawing aids that need the server (issue 28), none with model weights:
SLIC superpixels (scikit-image) computed once per image and size and kept in the object store,
GrabCut refinement of a box or a rough mask (OpenCV), and a dataset's machine proposals: a
classical spectral-residual saliency map or a finished run's own salience map of the image.

Every map is computed from the stored image file, so an image's superpixels are the same for
every annotator; the browser does the rest (filling, thresholding) without asking again.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image as PILImage

from backend.core.errors import Invalid, NotFound
from backend.core.storage import Storage
from backend.models import Dataset, Image, TrainingRun
from backend.services.runs import run_out_key

_logger = logging.getLogger(__name__)

# superpixels across the image's shorter side, per size the brush offers
SUPERPIXEL_SIZES = {"small": 40, "medium": 20, "large": 10}
MIN_SUPERPIXEL_SIDE = 2  # px: a superpixel is never smaller than 2 x 2 on average
MAX_SUPERPIXELS = 20_000  # the label map is uint16, and SLIC's time grows with the count
# GrabCut works on a copy at most this many pixels on its longer side (then scaled back)
GRABCUT_SIDE = 768
GRABCUT_ITERATIONS = 5
GRABCUT_SEED = 28
# the spectral residual is taken at this width (Hou and Zhang 2007 use 64 px)
SALIENCY_WIDTH = 64
PROPOSAL_SOURCE = re.compile(r"run:([1-9][0-9]{0,9})")


def _rgb(image: Image, storage: Storage) -> np.ndarray:
    """The stored image as H x W x 3 uint8 (grey and palette images in RGB)."""
    with PILImage.open(io.BytesIO(storage.get_bytes(image.storage_key))) as im:
        return np.asarray(im.convert("RGB"))


# ---------------------------------------------------------------------------- superpixels


@dataclass(frozen=True)
class LabelMap:
    """One image's superpixels: `count` labels 0..count-1, one per pixel (row-major), as
    zlib-compressed little-endian uint16 (`labels_zlib`: what the browser inflates)."""

    count: int
    labels_zlib: bytes


def _superpixel_key(image: Image, size: str) -> str:
    return f"derived/superpixels/v1/{image.sha256}/{size}.bin"


def compute_superpixels(rgb: np.ndarray, size: str) -> np.ndarray:
    """SLIC superpixels of an H x W x 3 image at `size`: H x W labels 0..count-1."""
    from skimage.segmentation import slic  # only here: scikit-image takes a while to import

    height, width = rgb.shape[:2]
    side = max(MIN_SUPERPIXEL_SIDE, min(height, width) / SUPERPIXEL_SIZES[size])
    n_segments = int(min(MAX_SUPERPIXELS, max(1, round(height * width / side**2))))
    labels = slic(rgb, n_segments=n_segments, compactness=10, start_label=0, channel_axis=-1)
    # SLIC's labels need not be consecutive: number them 0..count-1
    _, dense = np.unique(labels, return_inverse=True)
    return np.asarray(dense.reshape(height, width), dtype=np.uint16)


def superpixels(image: Image, size: str, storage: Storage) -> LabelMap:
    """The image's superpixels at `size` (small, medium, large): from the store, or computed
    on this first request and kept there (the same image file gives the same map)."""
    if size not in SUPERPIXEL_SIZES:
        raise Invalid(
            f"There is no superpixel size {size!r}: choose {', '.join(SUPERPIXEL_SIZES)}.",
            field="size",
        )
    key = _superpixel_key(image, size)
    if storage.exists(key):
        blob = storage.get_bytes(key)
        (count,) = struct.unpack_from("<I", blob)
        return LabelMap(count, blob[4:])
    labels = compute_superpixels(_rgb(image, storage), size)
    count = int(labels.max()) + 1
    packed = zlib.compress(labels.astype("<u2").tobytes(), 6)
    storage.put_bytes(key, struct.pack("<I", count) + packed)
    _logger.info("superpixels of image %s at %s: %d labels", image.id, size, count)
    return LabelMap(count, packed)


# ---------------------------------------------------------------------------- GrabCut


def _check_box(box: list[int], width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise Invalid(
            f"The box {box} does not lie inside the {width}x{height} image "
            "(x0 < x1 and y0 < y1, in pixels).",
            field="box",
        )
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise Invalid("The box is too small to refine: make it at least 4 pixels on each side.")
    if x1 - x0 == width and y1 - y0 == height:
        raise Invalid(
            "The box covers the whole image, which leaves GrabCut no background: "
            "draw it around the object."
        )
    return x0, y0, x1, y1


def refine(
    image: Image,
    storage: Storage,
    *,
    box: list[int] | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """GrabCut's segmentation of the image from a box around the object or from a rough mask
    (its pixels probably object, the rest probably background): an H x W bool mask."""
    if (box is None) == (mask is None):
        raise Invalid("Refine either a box or a mask, one of the two.")
    width, height = image.width, image.height
    rect = _check_box(box, width, height) if box is not None else None
    if mask is not None:
        if mask.shape != (height, width):
            raise Invalid(
                f"The mask is {mask.shape[1]}x{mask.shape[0]} pixels "
                f"but the image is {width}x{height}."
            )
        if not mask.any() or mask.all():
            raise Invalid(
                "A mask to refine needs both object and background pixels: "
                "draw a rough outline first."
            )
    rgb = _rgb(image, storage)
    scale = min(1.0, GRABCUT_SIDE / max(width, height))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if scale < 1:
        bgr = cv2.resize(bgr, small_size, interpolation=cv2.INTER_AREA)
    labels = np.zeros((small_size[1], small_size[0]), np.uint8)
    background = np.zeros((1, 65), np.float64)
    foreground = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(GRABCUT_SEED)  # its GMMs start from k-means: the same request, the same mask
    try:
        if rect is not None:
            x0, y0, x1, y1 = (round(v * scale) for v in rect)
            r = (x0, y0, max(1, x1 - x0), max(1, y1 - y0))
            cv2.grabCut(
                bgr, labels, r, background, foreground, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT
            )
        else:
            assert mask is not None
            rough = mask.astype(np.uint8)
            small_rough = (
                cv2.resize(rough, small_size, interpolation=cv2.INTER_NEAREST)
                if scale < 1
                else rough
            )
            labels[:] = np.where(small_rough > 0, cv2.GC_PR_FGD, cv2.GC_PR_BGD)
            cv2.grabCut(
                bgr,
                labels,
                (0, 0, 0, 0),  # unused: the mask says where to start
                background,
                foreground,
                GRABCUT_ITERATIONS,
                cv2.GC_INIT_WITH_MASK,
            )
    except cv2.error as exc:
        _logger.info("GrabCut failed on image %s: %s", image.id, exc)
        raise Invalid(
            "GrabCut could not separate an object here: try a box closer around it."
        ) from None
    fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1:
        fg = cv2.resize(fg, (width, height), interpolation=cv2.INTER_NEAREST)
    return np.asarray(fg, dtype=bool)


# ---------------------------------------------------------------------------- proposals


def spectral_residual(rgb: np.ndarray) -> np.ndarray:
    """Classical saliency (Hou and Zhang 2007, "Saliency detection: a spectral residual
    approach"): the log amplitude spectrum minus its local mean, transformed back with the
    original phase, squared and smoothed; at SALIENCY_WIDTH px, then at the image's size.
    Returns H x W uint8, 255 the most salient."""
    height, width = rgb.shape[:2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    small_h = max(1, round(height * SALIENCY_WIDTH / width))
    small = cv2.resize(grey, (SALIENCY_WIDTH, small_h), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    phase = np.angle(spectrum)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sal = cv2.GaussianBlur(sal, (0, 0), sigmaX=2.5)
    sal = cv2.resize(sal, (width, height), interpolation=cv2.INTER_LINEAR)
    low, high = float(sal.min()), float(sal.max())
    if high <= low:
        return np.zeros((height, width), np.uint8)
    return np.asarray(np.round((sal - low) / (high - low) * 255), dtype=np.uint8)


def _run_map(run_id: int, image: Image, storage: Storage) -> np.ndarray:
    """A finished run's own salience map of the image (its Grad-CAM sample), at image size."""
    key = f"{run_out_key(run_id)}/salience/salience.json"
    record = json.loads(storage.get_bytes(key)) if storage.exists(key) else {}
    for sample in record.get("samples", []):
        if sample.get("image_id") == image.id:
            blob = storage.get_bytes(f"{run_out_key(run_id)}/salience/{sample['model']}")
            with PILImage.open(io.BytesIO(blob)) as im:
                grey = im.convert("L").resize(
                    (image.width, image.height), PILImage.Resampling.BILINEAR
                )
                return np.asarray(grey, dtype=np.uint8)
    raise NotFound(f"Run {run_id} has no salience map of this image.")


def check_proposal_source(
    source: str | None, dataset: Dataset | None, run: TrainingRun | None
) -> None:
    """A dataset's proposals setting: null (off), "saliency", or "run:{id}" of a finished run
    of this dataset."""
    if source is None or source == "saliency":
        return
    if not PROPOSAL_SOURCE.fullmatch(source):
        raise Invalid(
            'Proposals are off (null), "saliency" or "run:" and a finished run\'s id.',
            field="proposals",
        )
    if run is None or (dataset is not None and run.dataset_id != dataset.id):
        raise Invalid(f"There is no run {source[4:]} of this dataset.", field="proposals")
    if run.state != "succeeded":
        raise Invalid(
            f"Run {run.id} has not finished: only a finished run's salience maps can be proposed.",
            field="proposals",
        )


def proposal_map(dataset: Dataset, image: Image, storage: Storage) -> tuple[str, np.ndarray]:
    """The dataset's proposal for the image: (its source, H x W uint8 salience, 255 the most
    salient). A dataset with proposals off answers nothing (Invalid)."""
    source = dataset.proposals
    if not source:
        raise Invalid("This dataset offers no proposals (a researcher can turn them on).")
    match = PROPOSAL_SOURCE.fullmatch(source)
    if match:
        return source, _run_map(int(match.group(1)), image, storage)
    return source, spectral_residual(_rgb(image, storage))
