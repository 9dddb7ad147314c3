"""Reading zip archives that strangers upload: an entry is decompressed in steps and refused
the moment it passes the per-entry cap (MAX_ARCHIVE_ENTRY_BYTES), whatever its header
declares. Shared by the dataset import and the mask import."""

from __future__ import annotations

import zipfile

from backend.core.config import get_settings
from backend.core.errors import TooLarge, Unreadable

STEP = 2**20  # decompressed bytes read at a time


def entry_cap() -> int:
    """The most one archive entry may expand to, in bytes (MAX_ARCHIVE_ENTRY_BYTES)."""
    return get_settings().max_archive_entry_bytes


def read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int | None = None) -> bytes:
    """An archive entry's bytes, decompressed in 1 MiB steps and refused the moment they pass
    `cap` (a zip entry's declared size can lie; a small entry can expand a thousandfold). An
    entry that declares more than the cap is refused before a byte is decompressed."""
    cap = entry_cap() if cap is None else cap
    too_large = TooLarge(
        f"The archive entry {info.filename!r} expands to more than {cap // 2**20} MiB; "
        "nothing was imported."
    )
    if info.file_size > cap:
        raise too_large
    chunks, total = [], 0
    try:
        with zf.open(info) as f:
            while chunk := f.read(STEP):
                total += len(chunk)
                if total > cap:
                    raise too_large
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise Unreadable(
            f"The archive entry {info.filename!r} is damaged; nothing was imported."
        ) from exc
    return b"".join(chunks)
