"""The storage interface (backend/core/storage.py) behaves the same on a local folder and on
a real S3 server (SeaweedFS): round trips, streaming, listing, deletion, atomic writes,
missing keys, refused keys; the worker cache downloads each object once and checks hashes."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from backend.core.storage import ContentCache, LocalStorage, S3Storage, Storage, StorageError
from tests import s3_server
from tests.conftest import S3_BUCKET


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3Storage(
        S3_BUCKET,
        f"unit-{uuid.uuid4().hex[:8]}",
        endpoint_url=endpoint,
        access_key_id=s3_server.ACCESS_KEY,
        secret_access_key=s3_server.SECRET_KEY,
    )


def test_round_trips_listing_and_deletion(store, tmp_path):
    store.put_bytes("a/one.bin", b"1")
    store.put_bytes("a/b/two.bin", b"22")
    store.put_bytes("c.bin", b"333")
    assert store.get_bytes("a/b/two.bin") == b"22"
    assert store.exists("a/one.bin") and not store.exists("a/none.bin")
    assert store.size("c.bin") == 3
    assert store.keys("a") == ["a/b/two.bin", "a/one.bin"]
    assert store.keys("nothing") == []
    store.delete("a/one.bin")
    store.delete("a/one.bin")  # gone already: no error
    assert store.keys("a") == ["a/b/two.bin"]
    store.delete_prefix("a")
    assert store.keys("a") == [] and store.exists("c.bin")


def test_large_objects_stream_both_ways(store, tmp_path):
    data = os.urandom(40 * 1024 * 1024 + 123)  # above the multipart threshold
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    store.put_file("big/blob.bin", source)
    assert store.size("big/blob.bin") == len(data)
    chunks = list(store.iter_bytes("big/blob.bin", chunk=1024 * 1024))
    assert max(len(c) for c in chunks) <= 1024 * 1024
    assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(data).digest()
    target = tmp_path / "out" / "copy.bin"
    store.download("big/blob.bin", target)
    assert target.read_bytes() == data
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".tmp-")]


def test_trees_go_up_and_come_back(store, tmp_path):
    folder = tmp_path / "run"
    (folder / "salience").mkdir(parents=True)
    (folder / "final.pt").write_bytes(b"weights")
    (folder / "salience" / "s0.png").write_bytes(b"png")
    store.put_tree("runs/7", folder)
    assert store.keys("runs/7") == ["runs/7/final.pt", "runs/7/salience/s0.png"]
    back = tmp_path / "back"
    store.download_tree("runs/7", back)
    assert (back / "salience" / "s0.png").read_bytes() == b"png"


def test_missing_keys_and_bad_keys(store, tmp_path):
    with pytest.raises(FileNotFoundError):
        store.get_bytes("no/such.bin")
    with pytest.raises(FileNotFoundError):
        store.size("no/such.bin")
    with pytest.raises(FileNotFoundError):
        store.download("no/such.bin", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    for bad in ("", "/etc/passwd", "a/../../b", "..", "a\\b"):
        with pytest.raises(StorageError):
            store.put_bytes(bad, b"x")


def test_a_failed_write_leaves_the_old_object(store, tmp_path):
    store.put_bytes("ckpt/checkpoint.pt", b"epoch 1")
    missing = tmp_path / "vanished.bin"  # the upload's source disappears: the write fails
    with pytest.raises((FileNotFoundError, OSError)):
        store.put_file("ckpt/checkpoint.pt", missing)
    assert store.get_bytes("ckpt/checkpoint.pt") == b"epoch 1"


def test_the_worker_cache_downloads_once_and_checks_the_hash(store, tmp_path):
    data = b"an image"
    sha = hashlib.sha256(data).hexdigest()
    store.put_bytes("datasets/1/a.png", data)
    cache = ContentCache(store, tmp_path / "cache")
    first = cache.by_hash("datasets/1/a.png", sha)
    again = cache.by_hash("datasets/1/a.png", sha)
    assert first.read_bytes() == data and again == first
    if isinstance(store, S3Storage):
        assert cache.downloads == 1
        assert (tmp_path / "cache") in first.parents  # the worker's own folder
        # an object whose bytes are not what the database says: refused, not cached
        store.put_bytes("datasets/1/b.png", b"tampered")
        claimed = hashlib.sha256(b"the original").hexdigest()
        with pytest.raises(StorageError, match="does not match"):
            cache.by_hash("datasets/1/b.png", claimed)
        assert not (tmp_path / "cache" / "objects" / claimed[:2] / claimed).exists()
    else:
        assert cache.downloads == 0  # a local folder is read in place
    store.put_bytes("runs/3/final.pt", b"w")
    assert cache.by_key("runs/3/final.pt").read_bytes() == b"w"


def test_the_cache_by_key_follows_the_store(store, tmp_path):
    cache = ContentCache(store, tmp_path / "cache")
    store.put_bytes("runs/5/final.pt", b"first")
    assert cache.by_key("runs/5/final.pt").read_bytes() == b"first"
    store.put_bytes("runs/5/final.pt", b"second model")  # written again (a new run, same key)
    assert cache.by_key("runs/5/final.pt").read_bytes() == b"second model"
    store.delete("runs/5/final.pt")
    with pytest.raises(FileNotFoundError):
        cache.by_key("runs/5/final.pt")
