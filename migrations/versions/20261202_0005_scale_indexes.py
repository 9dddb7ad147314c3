"""indexes for lab scale

An annotator's own masks (the queue and home page), the review queue by status, skips by
annotator, and the runs table newest first (issue "Beyond one machine", item 5).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 14:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_annotations_annotator_id_status', 'annotations', ['annotator_id', 'status'])
    op.create_index('ix_annotations_status_submitted_at', 'annotations', ['status', 'submitted_at'])
    op.create_index('ix_skips_annotator_id', 'skips', ['annotator_id'])
    op.create_index('ix_training_runs_created_at', 'training_runs', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_training_runs_created_at', table_name='training_runs')
    op.drop_index('ix_skips_annotator_id', table_name='skips')
    op.drop_index('ix_annotations_status_submitted_at', table_name='annotations')
    op.drop_index('ix_annotations_annotator_id_status', table_name='annotations')
