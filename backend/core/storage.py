"""Where files live: one interface, two stores.

Every file the product keeps (dataset images, uploaded archives, checkpoints, metrics,
salience samples, stimuli, exports) is an object under a key, a relative POSIX path such as
"datasets/3/ab12.png". LocalStorage keeps them in a folder (the embedded default, also fine
for one machine); S3Storage in an S3-compatible object store (STORAGE_URL=s3://bucket/prefix),
so that the API and workers on other hosts share nothing but the network.

Large objects stream both ways (put_file / download / iter_bytes: multipart uploads and
chunked reads); nothing needs a whole file in memory. Every write is atomic: a reader, or a
resumed run, sees the old object or the new one, never part of one (a temporary file and a
rename locally; S3 makes an object visible only when its upload completes).

A worker reads through a ContentCache in its own folder: dataset images by content hash (a
second run on the same data downloads nothing), checkpoints by key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from backend.core.config import Settings, get_settings

if TYPE_CHECKING:
    from starlette.responses import Response

CHUNK = 1024 * 1024


class StorageError(ValueError):
    pass


def check_key(key: str) -> PurePosixPath:
    """A key as a path; refused when it could leave the store's root."""
    pure = PurePosixPath(key)
    if not key or pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in key:
        raise StorageError(f"Invalid storage key: {key!r}")
    return pure


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=".tmp-")


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy a file so that target appears whole or not at all."""
    fd, tmp = _atomic_target(target)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Storage(ABC):
    """The operations every store offers. A missing key raises FileNotFoundError."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, key: str, source: Path) -> None:
        """Store a local file under key, streamed (a multipart upload when it is large)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def iter_bytes(self, key: str, chunk: int = CHUNK) -> Iterator[bytes]:
        """The object's bytes in chunks (it is opened before the first one is yielded)."""

    @abstractmethod
    def download(self, key: str, target: Path) -> None:
        """Copy the object to a local file, atomically (target appears whole or not)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def version(self, key: str) -> str:
        """A token that changes whenever the object is written again (S3: its ETag)."""

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Every key under prefix/ (recursively), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object (no error when it is already gone)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under prefix/ (and an object named prefix)."""

    def local_path(self, key: str) -> Path | None:  # noqa: ARG002 - a store without files
        """The object's own file when the store is a local folder; None otherwise."""
        return None

    def put_tree(self, prefix: str, folder: Path) -> None:
        """Store every file under a local folder as prefix/<relative path>."""
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.put_file(f"{prefix}/{path.relative_to(folder).as_posix()}", path)

    def download_tree(self, prefix: str, folder: Path) -> list[Path]:
        """Copy every object under prefix/ into folder (same relative paths); the files."""
        out = []
        for key in self.keys(prefix):
            target = folder / PurePosixPath(key).relative_to(prefix)
            self.download(key, target)
            out.append(target)
        return out


class LocalStorage(Storage):
    """Objects as files under one folder (the embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file of a key (it may not exist)."""
        return self.root.joinpath(*check_key(key).parts)

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        fd, tmp = _atomic_target(target)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, source: Path) -> None:
        target = self.path(key)
        if Path(source).resolve() == target.resolve():
            return
        _copy_atomic(Path(source), target)

    def get_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def iter_bytes(self, key: str, chunk: int = CHUNK) -> Iterator[bytes]:
        fh = self.path(key).open("rb")

        def chunks() -> Iterator[bytes]:
            with fh:
                while block := fh.read(chunk):
                    yield block

        return chunks()

    def download(self, key: str, target: Path) -> None:
        source = self.path(key)
        if not source.is_file():
            raise FileNotFoundError(key)
        _copy_atomic(source, Path(target))

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def version(self, key: str) -> str:
        st = self.path(key).stat()
        return f"{st.st_mtime_ns}-{st.st_size}"

    def keys(self, prefix: str) -> list[str]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        return sorted(
            f"{prefix}/{p.relative_to(folder).as_posix()}"
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        for parent in path.parents:  # leave no empty folders behind
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def delete_prefix(self, prefix: str) -> None:
        target = self.path(prefix)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


class S3Storage(Storage):
    """Objects in an S3-compatible store, under s3://bucket/prefix/."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32),
        )
        # files above 16 MiB go up and down in 16 MiB parts, four at a time
        self.transfer = TransferConfig(
            multipart_threshold=16 * CHUNK, multipart_chunksize=16 * CHUNK, max_concurrency=4
        )

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (tests, a first deployment)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)

    def put_file(self, key: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self._name(key), Config=self.transfer)

    def _get(self, key: str, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._name(key), **kwargs)
        except ClientError as exc:
            if self._missing(exc):
                raise FileNotFoundError(key) from exc
            raise

    def get_bytes(self, key: str) -> bytes:
        body = self._get(key)["Body"]
        with body:
            return bytes(body.read())

    def iter_bytes(self, key: str, chunk: int = CHUNK) -> Iterator[bytes]:
        body = self._get(key)["Body"]

        def chunks() -> Iterator[bytes]:
            with body:
                yield from body.iter_chunks(chunk)

        return chunks()

    def download(self, key: str, target: Path) -> None:
        from botocore.exceptions import ClientError

        fd, tmp = _atomic_target(Path(target))
        os.close(fd)
        try:
            self.client.download_file(self.bucket, self._name(key), tmp, Config=self.transfer)
            os.replace(tmp, target)
        except ClientError as exc:
            Path(tmp).unlink(missing_ok=True)
            if self._missing(exc):
                raise FileNotFoundError(key) from exc
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=self._name(key)))
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(key)
        return int(head["ContentLength"])

    def version(self, key: str) -> str:
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(key)
        return str(head["ETag"])

    def keys(self, prefix: str) -> list[str]:
        base = self._name(prefix) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base
        ):
            out.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(out)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def delete_prefix(self, prefix: str) -> None:
        names = [self._name(k) for k in self.keys(prefix)]
        if self.exists(prefix):
            names.append(self._name(prefix))
        for start in range(0, len(names), 1000):
            batch = [{"Key": n} for n in names[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})


def storage_from(settings: Settings) -> Storage:
    if not settings.storage_url:
        return LocalStorage(settings.storage_dir)
    bucket, _, prefix = settings.storage_url.removeprefix("s3://").partition("/")
    return S3Storage(
        bucket,
        prefix,
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id or None,
        secret_access_key=settings.s3_secret_access_key or None,
    )


_stores: dict[tuple[Any, ...], Storage] = {}
_stores_lock = threading.Lock()


def get_storage() -> Storage:
    """The configured store, one per process and configuration (an S3 client is reused)."""
    s = get_settings()
    key = (
        s.storage_url,
        str(s.storage_dir),
        s.s3_endpoint_url,
        s.s3_region,
        s.s3_access_key_id,
    )
    with _stores_lock:
        if key not in _stores:
            _stores[key] = storage_from(s)
        return _stores[key]


def serve(
    storage: Storage,
    key: str,
    media_type: str,
    *,
    filename: str | None = None,
    headers: dict[str, str] | None = None,
    missing: str = "The file is missing from storage.",
) -> Response:
    """An HTTP response with an object's bytes: the file itself from a local folder, or the
    object streamed from the store in 1 MiB chunks (through the API, so the login and role
    checks the route made stay the only way to the bytes; a presigned URL would outlive
    them and need the store reachable from every browser). A missing object is NotFound
    (404) with the sentence `missing`."""
    from starlette.responses import FileResponse, StreamingResponse

    from backend.core.errors import NotFound

    local = storage.local_path(key)
    if local is not None:
        if not local.is_file():
            raise NotFound(missing)
        return FileResponse(local, media_type=media_type, filename=filename, headers=headers)
    try:
        size = storage.size(key)
    except FileNotFoundError as exc:
        raise NotFound(missing) from exc
    out = dict(headers or {})
    out["Content-Length"] = str(size)
    if filename:
        out["Content-Disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(storage.iter_bytes(key), media_type=media_type, headers=out)


class ContentCache:
    """A worker's local copies of objects it reads: by content hash (dataset images: a second
    run on the same data downloads nothing) or by key (immutable objects: final checkpoints).
    On a local-folder store the object's own file is used, copied nowhere."""

    def __init__(self, storage: Storage, folder: Path) -> None:
        self.storage = storage
        self.folder = Path(folder)
        self.downloads = 0  # objects fetched from the store by this cache (for tests, logs)

    def by_hash(self, key: str, sha256: str) -> Path:
        """A local file with the object's bytes, checked against its SHA-256."""
        local = self.storage.local_path(key)
        if local is not None:
            return local
        path = self.folder / "objects" / sha256[:2] / sha256
        if path.is_file():
            return path
        self.storage.download(key, path)
        self.downloads += 1
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
        if digest.hexdigest() != sha256:
            path.unlink(missing_ok=True)
            raise StorageError(f"{key}: its content does not match its hash {sha256[:12]}…")
        return path

    def by_key(self, key: str) -> Path:
        """A local copy of an object (e.g. a run's final.pt), fetched again only when the
        store's copy changed (its version, one HEAD request); FileNotFoundError when the
        store has it no more."""
        local = self.storage.local_path(key)
        if local is not None:
            if not local.is_file():
                raise FileNotFoundError(key)
            return local
        path = self.folder / "keys" / Path(*check_key(key).parts)
        stamp = path.with_name(f".{path.name}.version")
        version = self.storage.version(key)
        if not (path.is_file() and stamp.is_file() and stamp.read_text() == version):
            self.storage.download(key, path)
            stamp.write_text(version)
            self.downloads += 1
        return path


def get_cache() -> ContentCache:
    return ContentCache(get_storage(), get_settings().worker_cache_dir)
