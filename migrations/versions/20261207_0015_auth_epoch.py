"""auth epoch

One row, one counter: every change that ends a login or changes what a login may do (a
logout, a password change, sign out everywhere, an admin's change of a user's role, activity
or password) adds 1 to it in the same transaction. Each server process keeps the logins it
has looked up, each with the counter's value it saw; a connection reads the counter as it is
taken from the pool (the round trip that used to be the pool's ping), and a kept login is
used only while the counter is unchanged (backend/services/logins.py, current_login).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "auth_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_epoch")),
    )
    op.bulk_insert(table, [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("auth_epoch")
