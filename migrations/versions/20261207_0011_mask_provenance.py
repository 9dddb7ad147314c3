"""mask provenance and dataset proposals

Every mask revision records which drawing aids made it (issue 28): the share of its salient
pixels each tool contributed (provenance, JSON) and the machine proposal it started from
(proposal_source). A dataset says whether its annotators are offered proposals (proposals,
null = off).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("annotation_revisions") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("proposal_source", sa.String(length=32), nullable=True))
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("proposals", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("proposals")
    with op.batch_alter_table("annotation_revisions") as batch:
        batch.drop_column("proposal_source")
        batch.drop_column("provenance")
