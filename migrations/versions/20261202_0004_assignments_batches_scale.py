"""dataset assignments, per-batch run figures, the display scale of an answer

Annotators assigned per dataset, the live training figures a run reports every few batches,
and the integer factor a participant's stimuli were drawn at (first-hour issue, items 3-5).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 13:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dataset_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_assignments_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_dataset_assignments_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_assignments')),
    sa.UniqueConstraint('dataset_id', 'user_id', name=op.f('uq_dataset_assignments_dataset_id_user_id'))
    )
    with op.batch_alter_table('dataset_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_assignments_user_id'), ['user_id'], unique=False)

    op.create_table('run_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('loss', sa.Float(), nullable=False),
    sa.Column('accuracy', sa.Float(), nullable=False),
    sa.Column('images_per_s', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['training_runs.id'], name=op.f('fk_run_batches_run_id_training_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_batches')),
    sa.UniqueConstraint('run_id', 'step', name=op.f('uq_run_batches_run_id_step'))
    )
    with op.batch_alter_table('responses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('display_scale', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('responses', schema=None) as batch_op:
        batch_op.drop_column('display_scale')
    op.drop_table('run_batches')
    with op.batch_alter_table('dataset_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_assignments_user_id'))
    op.drop_table('dataset_assignments')
