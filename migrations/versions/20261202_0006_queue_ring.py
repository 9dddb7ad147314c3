"""the annotation queue's ring position and slot count per image

Each image gets a random place on a ring and the number of annotations holding one of its
slots, with an index on (dataset, slots held, place): the next image for an annotator is an
index range read from the annotator's own place on the ring, not a count over every image
of the dataset (issue "Beyond one machine", item 5).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the same mixing of the id as the queue's former shuffle, so existing datasets keep an order
# that is neither by id nor by class
_PRIME = 2_147_483_629

# annotations holding a slot, as backend/services/masks/queue.py counts them (claims without
# a save are left out here: the queue counts them again before it hands out a slot)
_HELD = """
UPDATE images SET queue_held = (
    SELECT count(*) FROM annotations a
    WHERE a.image_id = images.id
      AND a.status != 'rejected'
      AND a.latest_revision > 0
      AND a.annotator_id NOT IN (SELECT id FROM users WHERE username LIKE 'import:%')
      AND NOT EXISTS (
          SELECT 1 FROM skips s WHERE s.image_id = a.image_id AND s.annotator_id = a.annotator_id
      )
)
"""


def upgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue_position', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('queue_held', sa.Integer(), nullable=False, server_default='0'))
    op.execute(
        "UPDATE images SET queue_position = "
        f"((CAST(id AS BIGINT) * 1103515245 + 12345) % {_PRIME}) * 69069 % {_PRIME}"
    )
    op.execute(_HELD)
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.alter_column('queue_position', server_default=None)
        batch_op.alter_column('queue_held', server_default=None)
        batch_op.create_index('ix_images_queue', ['dataset_id', 'queue_held', 'queue_position'], unique=False)
    op.create_index('ix_annotations_latest_revision_updated_at', 'annotations', ['latest_revision', 'updated_at'])


def downgrade() -> None:
    op.drop_index('ix_annotations_latest_revision_updated_at', table_name='annotations')
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index('ix_images_queue')
        batch_op.drop_column('queue_held')
        batch_op.drop_column('queue_position')
