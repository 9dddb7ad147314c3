"""Where files (images, checkpoints, stimuli) live: one small interface, a local folder for now.

Keys are relative POSIX paths ("datasets/3/images/ab12.png"). An object store can implement
the same four methods when workers run on several machines.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from backend.core.config import get_settings


class StorageError(ValueError):
    pass


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Local path of a key (workers hand it to the training library)."""
        pure = PurePosixPath(key)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise StorageError(f"Invalid storage key: {key!r}")
        return self.root.joinpath(*pure.parts)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write atomically: a reader sees the old file or the new one, never half of one."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete_prefix(self, prefix: str) -> None:
        target = self.path(prefix)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def get_storage() -> LocalStorage:
    return LocalStorage(get_settings().storage_dir)
