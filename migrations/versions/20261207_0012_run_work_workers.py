"""a run's work and the listening workers

A run keeps its work as the worker reports it (issue 29): training and final evaluation in
one unit, the phase, the evaluation's stage, so that its progress reaches its end only when
its evaluation does. Each listening Celery worker keeps a row (its GPUs, their leases, what it
does, when it last said so): the queue view counts them and says "waiting for a worker" when
none listens.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("work", sa.JSON(), nullable=True))
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hostname", sa.String(length=200), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("gpus", sa.JSON(), nullable=False),
        sa.Column("leases", sa.JSON(), nullable=False),
        sa.Column("job", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("hostname", name=op.f("uq_workers_hostname")),
    )


def downgrade() -> None:
    op.drop_table("workers")
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("work")
