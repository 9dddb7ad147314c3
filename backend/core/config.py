"""One Settings object, read from the environment, shared by the API server and the workers.

Nothing else in backend/ or worker/ reads os.environ.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_SECRET = "demo-secret-change-me"
ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # "demo" (embedded defaults, the default secret allowed), "production" or "test"
    environment: str = "demo"
    # SQLAlchemy URL; SQLite by default, postgresql+psycopg://user@host/db in production
    database_url: str = f"sqlite:///{ROOT / 'var' / 'app.db'}"
    # Celery broker: the embedded filesystem transport by default, redis://host:6379/0 in production
    celery_broker_url: str = "filesystem://"
    # Celery result store: a SQLite file by default, redis://... in production
    celery_result_backend: str = f"db+sqlite:///{ROOT / 'var' / 'celery-results.db'}"
    # folder used by the filesystem broker (embedded demo only)
    celery_broker_folder: Path = ROOT / "var" / "broker"
    # where every stored file lives (images, uploads, checkpoints, metrics, stimuli, exports):
    # empty for the local folder STORAGE_DIR (the embedded default), or s3://bucket/prefix
    # for an S3-compatible object store (API and workers then share no disk)
    storage_url: str = ""
    # root folder of stored files when STORAGE_URL is empty
    storage_dir: Path = ROOT / "var" / "storage"
    # the object store's endpoint (e.g. http://seaweedfs:8333, https://s3.eu-west-1.amazonaws.com);
    # empty: AWS's own for the region
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    # credentials; empty: boto3's usual chain (AWS_ACCESS_KEY_ID..., an instance role)
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # a worker's local copy of what it reads from the store (dataset images by content hash,
    # checkpoints), and its runs' working folders; never shared with the API
    worker_cache_dir: Path = ROOT / "var" / "worker-cache"
    # signs login tokens (cookie and bearer); changing it signs everyone out
    secret_key: str = DEMO_SECRET
    # lifetime of a login session, in seconds (the session row's expires_at)
    session_max_age_s: int = 12 * 3600
    # failed logins that lock an account (whatever the address) for the window below
    login_max_failures_per_account: int = 5
    # failed logins, over all usernames, that lock a client address for the window below
    login_max_failures_per_address: int = 20
    # the failed-login window, in seconds: failures older than this no longer count
    login_failure_window_s: int = 15 * 60
    # past a limit above, each further login waits this many seconds after the latest
    # failure, doubled with every failure past the limit (2, 4, 8 ... s), at most the window
    login_delay_base_s: float = 2.0
    # addresses never paused for failures over all usernames (the per-account pauses still
    # apply): IPs or networks, comma-separated (10.20.0.0/16, 192.0.2.7), for a lab whose
    # people all come through one NAT address
    login_allowed_addresses: str = ""
    # origins besides the request's own Host that may send cookie-authenticated writes,
    # comma-separated (https://studio.example.org), for a proxy that rewrites Host
    trusted_origins: str = ""
    # largest accepted upload (dataset zip), in bytes
    max_upload_bytes: int = 512 * 1024 * 1024
    # one archive entry, decompressed (CIFAR-100's training batch is 155 MB, CIFAR-10's 31 MB)
    max_archive_entry_bytes: int = 160 * 1024 * 1024
    # a JSON request body (every route but uploads and mask saves)
    max_json_body_bytes: int = 2 * 1024 * 1024
    # largest accepted image, in pixels (decompression-bomb guard)
    max_image_pixels: int = 40_000_000
    # largest accepted mask request body, in bytes
    max_mask_bytes: int = 8 * 1024 * 1024
    # most images one dataset import may hold
    max_images_per_import: int = 200_000
    # Celery queue that training workers consume
    training_queue: str = "training"
    # A run asks for `gpus` GPUs; its worker first leases that many free GPUs of its host
    # (worker/gpu_leases.py: one lock file per GPU, shared by every worker of the host).
    # The GPUs this worker may lease, comma-separated, named as CUDA_VISIBLE_DEVICES names
    # them (0,1,2,3); empty: the CUDA_VISIBLE_DEVICES it was started with, else every GPU
    # torch sees; on a host without CUDA nothing is leased
    worker_gpus: str = ""
    # the host-local folder of the GPU lease files (the same for every worker of a host);
    # unset: WORKER_CACHE_DIR/gpu-leases
    gpu_lock_dir: Path | None = None
    # seconds before a run that found too few free GPUs is tried again (it stays queued)
    gpu_wait_s: float = 30.0
    # the GPUs the worker process was given (read, never set, here): its leases' names
    cuda_visible_devices: str | None = None
    # seconds without a heartbeat after which a running run is considered orphaned
    run_heartbeat_timeout_s: int = 600
    # seconds a queued run may go without its broker message before it is dispatched again
    run_lost_message_grace_s: int = 60
    # seconds between two passes of every worker's recovery (orphaned runs, lost messages;
    # worker/recovery.py): a lost message is sent again within this plus the grace above
    run_recovery_interval_s: float = 30.0
    # how many runs of one sweep may be at the broker or training at once; the rest wait and
    # are sent as earlier ones end, so that a sweep never queues ahead of other runs
    sweep_in_flight: int = Field(default=2, ge=1, le=100)
    # mark the session cookie Secure (HTTPS only); unset: on in production, off elsewhere
    cookie_secure: bool | None = None
    # where `make demo` serves the app
    demo_host: str = "127.0.0.1"
    demo_port: int = 8000
    # the demo's worker trains at this CPU niceness (0-19): on a laptop's few cores the pages
    # stay responsive while a run trains (a run only takes a little longer)
    demo_worker_niceness: int = Field(default=10, ge=0, le=19)
    # how many jobs the demo's worker runs at once (its sweep's runs two at a time), each
    # with an equal share of the CPU's threads
    demo_worker_concurrency: int = Field(default=2, ge=1, le=16)
    # the demo's runs: "full", or "quick" (the same content from shorter runs: one epoch,
    # the evaluation on fewer images; the tests' demo, or a slow machine's first look)
    demo_runs: Literal["full", "quick"] = "full"

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        if value and not (value.startswith("s3://") and len(value) > len("s3://")):
            raise ValueError("STORAGE_URL must be empty (the local folder) or s3://bucket[/prefix]")
        return value

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, value: str) -> str:
        if value not in {"demo", "production", "test"}:
            raise ValueError("ENVIRONMENT must be one of demo, production, test")
        return value

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.environment != "demo" and (
            self.secret_key == DEMO_SECRET or len(self.secret_key) < 16
        ):
            raise ValueError(
                "SECRET_KEY must be set to a random string of at least 16 characters "
                "outside the demo (for example: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        return self

    @field_validator("login_allowed_addresses")
    @classmethod
    def _known_networks(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError as exc:
                    raise ValueError(
                        f"LOGIN_ALLOWED_ADDRESSES: {entry!r} is not an IP address or network"
                    ) from exc
        return value

    @property
    def login_allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """LOGIN_ALLOWED_ADDRESSES as networks (a single address is a /32 or /128)."""
        return [
            ipaddress.ip_network(e.strip(), strict=False)
            for e in self.login_allowed_addresses.split(",")
            if e.strip()
        ]

    @property
    def gpu_lease_dir(self) -> Path:
        """Where the GPU lease files of this host live (GPU_LOCK_DIR)."""
        return self.gpu_lock_dir or self.worker_cache_dir / "gpu-leases"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookie(self) -> bool:
        """Whether the session cookie is Secure: COOKIE_SECURE, else on in production."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.environment == "production"

    @property
    def trusted_origin_list(self) -> list[str]:
        """TRUSTED_ORIGINS as normalised origins (scheme://host[:port], lower case)."""
        return [o.strip().rstrip("/").lower() for o in self.trusted_origins.split(",") if o.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
