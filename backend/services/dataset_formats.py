"""The layouts datasets are distributed in, read into one list of items.

A reader turns the files of a tree (Entry: a relative path and a way to read its bytes) into a
Layout: Items (the image as an encoded file or an RGB array, its class name, its split and,
where the format ships one, a soft segmentation to import as a mask) and the class names in
their official order. Readers only read and check what their format promises; they touch
neither the database nor storage. backend.services.datasets.import_dataset decodes and checks
every item and then stores all of them, or none.

Recognised by layout, inside at most one wrapper folder:

- CIFAR-10, python version (cifar-10-batches-py/): batches.meta, data_batch_1..5, test_batch;
- CIFAR-100, python version (cifar-100-python/): meta, train, test (the fine labels);
- CUB-200-2011 (CUB_200_2011/): images/, classes.txt, images.txt, image_class_labels.txt,
  train_test_split.txt and, optionally, segmentations/ (imported as masks);
- ImageFolder: <class>/<image>, or train/<class>/<image> beside test/ or val/ (val = test).

CIFAR's files are pickles, and a pickle can run any code when it is loaded: they are loaded
by an unpickler that builds numpy arrays and plain Python values, and nothing else.
"""

from __future__ import annotations

import io
import operator
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from backend.core.errors import Unreadable


@dataclass
class Entry:
    path: PurePosixPath  # relative, already checked not to escape
    read: Callable[[], bytes]


@dataclass
class Item:
    """One image of a dataset, not yet checked: exactly one of file and pixels is set."""

    filename: str  # the path shown to people (Image.filename)
    class_name: str
    split: str | None  # "train" or "test"; None: chosen from the image's hash
    file: Entry | None = None  # an encoded image (PNG, JPEG, ...)
    pixels: np.ndarray | None = None  # or an H x W x 3 uint8 RGB array, stored as PNG
    mask: Entry | None = None  # a soft grey segmentation PNG, binarised at >= 128


@dataclass
class Layout:
    format: str  # "ImageFolder", "CIFAR-10", "CIFAR-100", "CUB-200-2011"
    items: list[Item]
    classes: list[str] | None = None  # official order (index = label); None: sorted names
    mask_account: str | None = None  # masks belong to the account import:<mask_account>
    mask_source: str = ""  # AnnotationRevision.source of those masks


SPLIT_DIRS = ("train", "test", "val")
CIFAR10, CIFAR100, CUB = "CIFAR-10", "CIFAR-100", "CUB-200-2011"
CUB_FILES = ("classes.txt", "images.txt", "image_class_labels.txt", "train_test_split.txt")
_DATA_BATCH = re.compile(r"^data_batch_(\d+)$")
_PLAIN_NAME = re.compile(r"^\w[\w.+-]{0,199}$")


def read_layout(entries: list[Entry]) -> Layout:
    """Recognise the tree's format by its files and read it."""
    entries = _strip_wrapper(entries)
    if not entries:
        raise Unreadable("The dataset is empty: no image files were found.")
    fmt = _format_of(entries)
    if fmt == CIFAR10:
        return read_cifar10(_top_files(entries))
    if fmt == CIFAR100:
        return read_cifar100(_top_files(entries))
    if fmt == CUB:
        return read_cub(entries)
    return read_imagefolder(entries)


def _top_files(entries: list[Entry]) -> dict[str, Entry]:
    return {e.path.name: e for e in entries if len(e.path.parts) == 1}


def _format_of(entries: list[Entry]) -> str | None:
    top = set(_top_files(entries))
    if "batches.meta" in top:
        return CIFAR10
    if "meta" in top and top & {"train", "test"}:
        return CIFAR100
    if top & set(CUB_FILES):
        return CUB
    return None


def _strip_wrapper(entries: list[Entry]) -> list[Entry]:
    """A zip of a folder holds one top-level directory around the tree: look inside it."""
    if _format_of(entries) is not None:
        return entries
    folders = {e.path.parts[0] for e in entries if len(e.path.parts) > 1}
    if len(folders) != 1:
        return entries
    inner = [
        Entry(PurePosixPath(*e.path.parts[1:]), e.read) for e in entries if len(e.path.parts) > 1
    ]
    if _format_of(inner) is not None:
        # loose files beside the wrapper (CUB's tarball has attributes.txt there) are not
        # part of the dataset
        return inner
    if (
        len(inner) == len(entries)
        and next(iter(folders)) not in SPLIT_DIRS
        and all(len(e.path.parts) >= 3 for e in entries)
    ):
        return inner
    return entries


# ---------------------------------------------------------------------------- ImageFolder


def read_imagefolder(entries: list[Entry]) -> Layout:
    """<class>/<image>, or <split>/<class>/<image> with train/ and test/ or val/."""
    has_splits = any(e.path.parts[0] in SPLIT_DIRS and len(e.path.parts) >= 3 for e in entries)
    if has_splits and {"test", "val"} <= {e.path.parts[0] for e in entries}:
        raise Unreadable(
            "The tree has both a test/ and a val/ folder; keep one of them: it becomes the "
            "test split."
        )
    items = []
    for e in entries:
        parts = e.path.parts
        if has_splits:
            if parts[0] not in SPLIT_DIRS or len(parts) != 3:
                raise Unreadable(
                    f"{e.path} is not inside train/<class>/, test/<class>/ or val/<class>/; "
                    "the tree must have one folder per class."
                )
            split = "test" if parts[0] == "val" else parts[0]
            items.append(Item(str(e.path), parts[1], split, file=e))
        else:
            if len(parts) != 2:
                raise Unreadable(
                    f"{e.path} is not inside a class folder; the tree must have one folder "
                    "per class with the images directly inside (or be CIFAR-10 or CIFAR-100 "
                    "in their python version, or CUB-200-2011)."
                )
            items.append(Item(str(e.path), parts[0], None, file=e))
    return Layout("ImageFolder", items)


# ---------------------------------------------------------------------------- CIFAR pickles


class _Refused(pickle.UnpicklingError):
    """The pickle asked for something a CIFAR file never needs."""


class _NdarrayToken:
    """Stands for numpy.ndarray inside a pickle: only _reconstruct may use it."""


_NDARRAY = _NdarrayToken()


def _numpy_reconstruct() -> Callable[..., Any]:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


_RECONSTRUCT = _numpy_reconstruct()


def _reconstruct(cls: object, shape: object, typecode: object) -> np.ndarray:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b"b") and then sets its state:
    # anything else (another class, a large first allocation) is no CIFAR file
    if cls is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise _Refused("an array built in an unusual way")
    empty: np.ndarray = _RECONSTRUCT(np.ndarray, (0,), b"b")
    return empty


def _latin1(text: object, encoding: object) -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused("_codecs.encode with another encoding than latin1")
    return text.encode("latin1")


# numeric dtypes only: an object array would unpickle arbitrary objects (and could be made to
# allocate far more memory than the file holds)
_DTYPE_CODES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"}


def _dtype(code: object, align: object = False, copy: object = False) -> np.dtype:
    text = code.decode("latin1") if isinstance(code, bytes) else code
    if text not in _DTYPE_CODES:
        raise _Refused(f"the numpy dtype {text!r}")
    return np.dtype(text, bool(align), bool(copy))


def _check_dtype_state(state: object) -> None:
    # the state numpy gives a plain numeric dtype: (3, byte order, None, None, None, -1, -1, 0)
    if not (
        isinstance(state, tuple)
        and len(state) == 8
        and state[0] == 3
        and state[1] in ("|", "<", ">", "=", b"|", b"<", b">", b"=")
        and state[2:5] == (None, None, None)
        and state[5:] == (-1, -1, 0)
    ):
        raise _Refused("a numpy dtype with fields, subarrays or flags")


def _check_array_state(state: object) -> None:
    # (version, shape, dtype, Fortran order, raw bytes) of a numeric array
    if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
        raise _Refused("an array in an unknown format")
    _, shape, dtype, _, raw = state
    if not (
        isinstance(shape, tuple)
        and len(shape) <= 4
        and all(isinstance(n, int) and n >= 0 for n in shape)
        and isinstance(dtype, np.dtype)
        and dtype.kind in "biuf"
        and dtype.fields is None
        and dtype.subdtype is None
        and isinstance(raw, bytes)
        and len(raw) == int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    ):
        raise _Refused("an array that is not plain numbers")


# (module, name) -> what the name stands for: the globals of numpy arrays in a pickle
_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # written by numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # written by numpy 2.x
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
}


class _CifarUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, restricted: globals come only from _ALLOWED_GLOBALS and the
    state of an object (BUILD) is set only on numeric arrays and plain dtypes, once checked.
    (A CIFAR batch is a few opcodes around one large string: this loads it in well under a
    second.)"""

    dispatch = dict(pickle._Unpickler.dispatch)
    stack: list[Any]  # the unpickler's own stack

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.dtype):
            _check_dtype_state(state)
        elif isinstance(inst, np.ndarray):
            _check_array_state(state)
        else:
            raise _Refused(f"setting the state of a {type(inst).__name__}")
        inst.__setstate__(state)

    dispatch[pickle.BUILD[0]] = load_build  # type: ignore[assignment]


def load_pickle(entry: Entry, what: str) -> dict[bytes | str, Any]:
    """A CIFAR pickle (Python 2, keys as bytes) as a dict; never runs code from the file."""
    data = entry.read()
    try:
        obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as exc:
        raise Unreadable(
            f"{entry.path} asks for {exc}, which a {what} file never does: it was not "
            "loaded (only numpy arrays, lists, numbers and strings are accepted); nothing "
            "was imported."
        ) from exc
    except Exception as exc:  # any failure of the unpickler means "damaged"
        raise Unreadable(
            f"{entry.path} is not a readable {what} pickle (it is truncated or damaged); "
            "nothing was imported."
        ) from exc
    if not isinstance(obj, dict):
        raise Unreadable(f"{entry.path} does not hold a {what} dictionary; nothing was imported.")
    return obj


_MISSING = object()


def _field(
    d: dict[bytes | str, Any], key: str, entry: Entry, what: str, default: object = _MISSING
) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    if default is not _MISSING:
        return default
    raise Unreadable(
        f"{entry.path} has no {key!r} entry, as every {what} file has; nothing was imported."
    )


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin1")
    return value if isinstance(value, str) else None


def _class_names(entry: Entry, key: str, what: str) -> list[str]:
    raw = _field(load_pickle(entry, what), key, entry, what)
    names = [_text(v) for v in raw] if isinstance(raw, (list, tuple)) else None
    if not names or any(n is None or not n.strip() or len(n) > 200 or "/" in n for n in names):
        raise Unreadable(
            f"{entry.path}: {key} must be a list of class names; nothing was imported."
        )
    clean = [n.strip() for n in names if n is not None]
    if len(set(clean)) != len(clean):
        raise Unreadable(f"{entry.path}: {key} names a class twice; nothing was imported.")
    return clean


def _cifar_items(
    entry: Entry, label_key: str, classes: list[str], split: str, what: str
) -> list[Item]:
    """The images of one batch file: data N x 3072 (R, G, B planes of 32 x 32, row-major)."""
    batch = load_pickle(entry, what)
    data = _field(batch, "data", entry, what)
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
    ):
        found = (
            f"a {data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else f"a {type(data).__name__}"
        )
        raise Unreadable(
            f"{entry.path}: its data must be an N x 3072 array of bytes (32x32 RGB images), "
            f"not {found}; nothing was imported."
        )
    n = data.shape[0]
    raw_labels = _field(batch, label_key, entry, what)
    try:
        labels = [operator.index(v) for v in raw_labels]
    except TypeError as exc:
        raise Unreadable(
            f"{entry.path}: {label_key} must be a list of whole numbers; nothing was imported."
        ) from exc
    if len(labels) != n:
        raise Unreadable(
            f"{entry.path} has {n} images but {len(labels)} {label_key}; nothing was imported."
        )
    for i, label in enumerate(labels):
        if not 0 <= label < len(classes):
            raise Unreadable(
                f"{entry.path}: image {i} has the label {label}, outside the {len(classes)} "
                f"classes (0 to {len(classes) - 1}); nothing was imported."
            )
    raw_names = _field(batch, "filenames", entry, what, None)
    if raw_names is None:
        names = [f"{entry.path.name}_{i:05d}.png" for i in range(n)]
    else:
        names = [_text(v) or "" for v in raw_names] if isinstance(raw_names, (list, tuple)) else []
        if len(names) != n:
            raise Unreadable(
                f"{entry.path} has {n} images but {len(names)} filenames; nothing was imported."
            )
        for i, name in enumerate(names):
            if not _PLAIN_NAME.match(name):
                raise Unreadable(
                    f"{entry.path}: the file name {name!r} of image {i} is not a plain file "
                    "name; nothing was imported."
                )
    planes = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)  # a view: H x W x RGB per image
    items = []
    for i in range(n):
        name = names[i] if names[i].lower().endswith(".png") else names[i] + ".png"
        cls = classes[labels[i]]
        items.append(Item(f"{split}/{cls}/{name}", cls, split, pixels=planes[i]))
    return items


def read_cifar10(files: dict[str, Entry]) -> Layout:
    classes = _class_names(files["batches.meta"], "label_names", CIFAR10)
    train = sorted((int(m[1]), e) for name, e in files.items() if (m := _DATA_BATCH.match(name)))
    if not train:
        raise Unreadable(
            "The CIFAR-10 folder has batches.meta but no data_batch_1 .. "
            "data_batch_5; nothing was imported."
        )
    if "test_batch" not in files:
        raise Unreadable("The CIFAR-10 folder has no test_batch; nothing was imported.")
    items = []
    for _, entry in train:
        items += _cifar_items(entry, "labels", classes, "train", CIFAR10)
    items += _cifar_items(files["test_batch"], "labels", classes, "test", CIFAR10)
    return Layout(CIFAR10, items, classes)


def read_cifar100(files: dict[str, Entry]) -> Layout:
    missing = [n for n in ("train", "test") if n not in files]
    if missing:
        raise Unreadable(
            f"The CIFAR-100 folder has no {' or '.join(missing)} file; nothing was imported."
        )
    classes = _class_names(files["meta"], "fine_label_names", CIFAR100)
    items = _cifar_items(files["train"], "fine_labels", classes, "train", CIFAR100)
    items += _cifar_items(files["test"], "fine_labels", classes, "test", CIFAR100)
    return Layout(CIFAR100, items, classes)


# ---------------------------------------------------------------------------- CUB-200-2011


def _id_table(entry: Entry, columns: str) -> dict[int, str]:
    """The lines "<id> <value>" of one of CUB's text files."""
    try:
        text = entry.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"{entry.path} is not UTF-8 text; nothing was imported.") from exc
    table: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise Unreadable(
                f'{entry.path} line {number} is not "{columns}"; nothing was imported.'
            )
        key = int(parts[0])
        if key in table:
            raise Unreadable(
                f"{entry.path} line {number} repeats the id {key}; nothing was imported."
            )
        table[key] = parts[1].strip()
    return table


def _int_table(entry: Entry, columns: str, allowed: set[int] | None = None) -> dict[int, int]:
    table = {}
    for key, value in _id_table(entry, columns).items():
        if not value.isdigit() or (allowed is not None and int(value) not in allowed):
            raise Unreadable(
                f'{entry.path}: the line of id {key} is not "{columns}"; nothing was imported.'
            )
        table[key] = int(value)
    return table


def _under(entries: list[Entry], folder: str) -> dict[str, Entry]:
    return {
        str(PurePosixPath(*e.path.parts[1:])): e
        for e in entries
        if len(e.path.parts) > 1 and e.path.parts[0] == folder
    }


def read_cub(entries: list[Entry]) -> Layout:
    """CUB-200-2011's official tree; every segmentation map becomes an accepted mask."""
    top = _top_files(entries)
    missing = [n for n in CUB_FILES if n not in top]
    if missing:
        raise Unreadable(
            f"The CUB-200-2011 tree has no {', '.join(missing)}; nothing was imported."
        )
    classes = _id_table(top["classes.txt"], "<class id> <class name>")
    names = list(classes.values())
    if not classes or len(set(names)) != len(names) or any(len(n) > 200 for n in names):
        raise Unreadable("classes.txt must name each class once; nothing was imported.")
    paths = _id_table(top["images.txt"], "<image id> <image path>")
    labels = _int_table(top["image_class_labels.txt"], "<image id> <class id>")
    splits = _int_table(top["train_test_split.txt"], "<image id> <1 = train, 0 = test>", {0, 1})
    images = _under(entries, "images")
    segmentations = _under(entries, "segmentations")
    for table_name, table in (
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", splits),
    ):
        stray = sorted(set(table) - set(paths))
        if stray:
            raise Unreadable(
                f"{table_name} has a line for image {stray[0]}, which images.txt does "
                "not list; nothing was imported."
            )
    items = []
    used_masks = set()
    for image_id, rel in sorted(paths.items()):
        file = images.get(rel)
        if file is None:
            raise Unreadable(
                f"images.txt lists images/{rel} (image {image_id}), which is not "
                "in the tree; nothing was imported."
            )
        if image_id not in labels:
            raise Unreadable(
                f"Image {image_id} has no line in image_class_labels.txt; nothing was imported."
            )
        if labels[image_id] not in classes:
            raise Unreadable(
                f"image_class_labels.txt gives image {image_id} the class id "
                f"{labels[image_id]}, which classes.txt does not list; nothing was imported."
            )
        if image_id not in splits:
            raise Unreadable(
                f"Image {image_id} has no line in train_test_split.txt; nothing was imported."
            )
        mask = None
        if segmentations:
            mask_rel = str(PurePosixPath(rel).with_suffix(".png"))
            mask = segmentations.get(mask_rel)
            if mask is None:
                raise Unreadable(
                    f"segmentations/{mask_rel}, the segmentation of images/"
                    f"{rel}, is missing; nothing was imported."
                )
            used_masks.add(mask_rel)
        split = "train" if splits[image_id] == 1 else "test"
        items.append(Item(rel, classes[labels[image_id]], split, file=file, mask=mask))
    unlisted = sorted(set(images) - set(paths.values()))
    if unlisted:
        raise Unreadable(f"images/{unlisted[0]} is not listed in images.txt; nothing was imported.")
    stray_masks = sorted(set(segmentations) - used_masks)
    if stray_masks:
        raise Unreadable(
            f"segmentations/{stray_masks[0]} is the segmentation of no image "
            "listed in images.txt; nothing was imported."
        )
    ordered = [classes[k] for k in sorted(classes)]
    return Layout(CUB, items, ordered, mask_account="cub-200-2011", mask_source="import:cub")
