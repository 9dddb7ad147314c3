"""when and why a queued run's message was sent again by the recovery

The worker's recovery timer (worker/recovery.py) re-sends the message of a run whose worker
went quiet or whose message the broker lost; the run keeps the time and the reason, and its
page shows them (issue 22, item 3).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resent_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resent_why', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.drop_column('resent_why')
        batch_op.drop_column('resent_at')
