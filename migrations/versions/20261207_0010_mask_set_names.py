"""mask set names unique per dataset

Freezing under a name a set of the dataset already has is refused (issue 29): the run form
offered two sets of one name. Existing duplicates keep their oldest holder's name; the others
get " (2)", " (3)", ... appended (a suffix not taken already).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 12:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rename_duplicates() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, dataset_id, name FROM mask_sets ORDER BY id")).all()
    taken: dict[int, set[str]] = {}
    for _, dataset_id, name in rows:
        taken.setdefault(dataset_id, set()).add(name)
    seen: dict[int, set[str]] = {}
    for id_, dataset_id, name in rows:
        names = seen.setdefault(dataset_id, set())
        if name not in names:
            names.add(name)
            continue
        n = 2
        while f"{name} ({n})"[:200] in taken[dataset_id]:
            n += 1
        new = f"{name} ({n})"[:200]
        taken[dataset_id].add(new)
        names.add(new)
        conn.execute(
            sa.text("UPDATE mask_sets SET name = :name WHERE id = :id"), {"name": new, "id": id_}
        )


def upgrade() -> None:
    _rename_duplicates()
    with op.batch_alter_table("mask_sets", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_mask_sets_dataset_id_name"), ["dataset_id", "name"]
        )


def downgrade() -> None:
    with op.batch_alter_table("mask_sets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_mask_sets_dataset_id_name"), type_="unique")
