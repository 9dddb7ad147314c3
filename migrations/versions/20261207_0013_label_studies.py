"""label studies

A third kind of perception study (issue 26): participants name the class of one image, clean
or an AutoAttack example that fooled a run's model. The studies' design check admits "label";
a label trial's right answer and a participant's answer are a class index or "none" (can't
tell), which the existing 8-character columns hold.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 14:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_constraint(op.f("ck_studies_design"), type_="check")
        batch.create_check_constraint("design", "design IN ('2afc', 'yesno', 'label')")


def downgrade() -> None:
    op.execute("DELETE FROM studies WHERE design = 'label'")
    with op.batch_alter_table("studies") as batch:
        batch.drop_constraint(op.f("ck_studies_design"), type_="check")
        batch.create_check_constraint("design", "design IN ('2afc', 'yesno')")
