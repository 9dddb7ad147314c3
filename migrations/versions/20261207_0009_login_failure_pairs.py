"""failed logins counted per username and address together ("pair")

The throttle delays a login progressively per username from one address, per username from
addresses it has never logged in from, and per address (issue 27, lockouts): a LoginFailure
row may now be of kind "pair".

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 12:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_login_failures_kind"), type_="check")
        batch_op.create_check_constraint(
            batch_op.f("ck_login_failures_kind"), "kind IN ('account', 'address', 'pair')"
        )


def downgrade() -> None:
    op.execute("DELETE FROM login_failures WHERE kind = 'pair'")
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_login_failures_kind"), type_="check")
        batch_op.create_check_constraint(
            batch_op.f("ck_login_failures_kind"), "kind IN ('account', 'address')"
        )
