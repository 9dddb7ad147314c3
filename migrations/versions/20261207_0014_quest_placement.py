"""QUEST+ placement in studies

A 2AFC study may place each participant's epsilons with QUEST+ (issue 25, item 5): a track per
participant and run holds the posterior over the Weibull's parameters (quest_tracks), and each
trial keeps the posterior's summary once its answer was counted (trials.posterior).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quest_tracks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("posterior", sa.JSON(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("next_epsilon_255", sa.Float(), nullable=False),
        sa.Column("stopped", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["participant_sessions.id"],
            name=op.f("fk_quest_tracks_session_id_participant_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quest_tracks")),
        sa.UniqueConstraint("session_id", "run_id", name=op.f("uq_quest_tracks_session_id_run_id")),
    )
    with op.batch_alter_table("quest_tracks") as batch:
        batch.create_index(batch.f("ix_quest_tracks_session_id"), ["session_id"], unique=False)
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("posterior", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("posterior")
    op.drop_table("quest_tracks")
