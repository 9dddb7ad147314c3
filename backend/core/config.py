"""One Settings object, read from the environment, shared by the API server and the workers.

Nothing else in backend/ or worker/ reads os.environ.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import field_validator, model_validator
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
    # root folder of stored files (images, checkpoints, stimuli); shared by API and workers
    storage_dir: Path = ROOT / "var" / "storage"
    # signs session cookies and bearer tokens
    secret_key: str = DEMO_SECRET
    # lifetime of a login, in seconds
    session_max_age_s: int = 12 * 3600
    # largest accepted upload (dataset zip), in bytes
    max_upload_bytes: int = 512 * 1024 * 1024
    # largest accepted image, in pixels (decompression-bomb guard)
    max_image_pixels: int = 40_000_000
    # largest accepted mask request body, in bytes
    max_mask_bytes: int = 8 * 1024 * 1024
    # most images one dataset import may hold
    max_images_per_import: int = 200_000
    # Celery queue that training workers consume
    training_queue: str = "training"
    # seconds without a heartbeat after which a running run is considered orphaned
    run_heartbeat_timeout_s: int = 600
    # mark cookies Secure (production behind HTTPS)
    cookie_secure: bool = False
    # where `make demo` serves the app
    demo_host: str = "127.0.0.1"
    demo_port: int = 8000

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

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
