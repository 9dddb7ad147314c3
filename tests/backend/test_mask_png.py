"""The stored masks' own 1-bit PNG writer (backend/services/masks/codec.py, mask_to_png):
any mask, of any size, reads back pixel for pixel through Pillow and through the mask
reader, as a 1-bit PNG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from backend.services.masks.codec import mask_to_png, png_to_mask


def test_masks_of_every_shape_read_back_exactly():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 8), (8, 1), (3, 17), (7, 9), (100, 33), (64, 64), (512, 512)]
    for shape in shapes:
        for density in (0.0, 0.03, 0.5, 1.0):
            mask = rng.random(shape) < density
            data = mask_to_png(mask)
            img = Image.open(io.BytesIO(data))
            img.load()
            assert (img.format, img.mode, img.size) == ("PNG", "1", (shape[1], shape[0]))
            assert np.array_equal(np.asarray(img), mask)
            assert np.array_equal(png_to_mask(data), mask)


def test_a_brush_mask_stays_compact():
    yy, xx = np.mgrid[0:512, 0:512]
    mask = (xx - 200) ** 2 + (yy - 300) ** 2 <= 80**2
    # a 512 x 512 disc: 32 KiB of packed bits, deflated to a small fraction of that
    assert len(mask_to_png(mask)) < 4096
