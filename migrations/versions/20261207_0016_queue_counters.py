"""the annotation queue's counters: images per slots held, and touched images per annotator

Two tables the database keeps up to date itself, with triggers, in the transaction of every
change: queue_counts holds how many images of a dataset have each number of slots held
(images.queue_held), queue_touched how many images of a dataset an annotator touched (has an
annotation of, a claim included, or skipped) at each number of slots held. The images
still waiting for an annotator are then a sum over a few rows of each (the slot counts below
annotators_per_image) instead of a count over every open image of the dataset and a probe of
each of the annotator's masks (issue 27, "make the next-image ask cheap").

Triggers rather than code: every path that adds images, claims, skips, saves or reviews
keeps the counts, those that do not know about the queue included. On PostgreSQL they are
statement triggers over transition tables (one update per statement, not one per row: a
row trigger would update one counter row 100,000 times in an import's transaction); on
SQLite row triggers. The counts are per value of queue_held, not per open or full image,
so a change of annotators_per_image needs no recount.

On PostgreSQL each statement updates the counter row of its dataset, and a transaction
keeps every version of a row it updated until it ends: many images inserted one statement
per row in one transaction (a plain executemany of 200,000 rows) make each update slower
than the one before. Insert them in multi-row statements, as the ORM's flush and the
dataset import do (1,000 rows a statement).

A later migration that rebuilds images, annotations or skips with Alembic's batch mode on
SQLite drops these triggers: it must create them again (_SQLITE below).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = [
    """
    INSERT INTO queue_counts (dataset_id, held, images)
    SELECT dataset_id, queue_held, count(*) FROM images GROUP BY dataset_id, queue_held
    """,
    """
    INSERT INTO queue_touched (annotator_id, dataset_id, held, images)
    SELECT t.annotator_id, i.dataset_id, i.queue_held, count(*)
    FROM (SELECT image_id, annotator_id FROM annotations
          UNION SELECT image_id, annotator_id FROM skips) t
    JOIN images i ON i.id = t.image_id
    GROUP BY t.annotator_id, i.dataset_id, i.queue_held
    """,
]

# (annotator, image) pairs that make the annotator a toucher of the image: an annotation or a
# skip. A new annotation counts only where no skip of the pair exists, and the reverse.
_TOUCHERS_OF = (
    "SELECT annotator_id FROM annotations WHERE image_id = {id} "
    "UNION SELECT annotator_id FROM skips WHERE image_id = {id}"
)

# The image of each row of a transition table, looked up by its key: a transition table has
# no statistics, and a plain join let the planner read every image of the table once per
# statement (an import of 100,000 masks in batches of 1,000 took minutes); OFFSET 0 keeps
# the subquery from being pulled up into such a join.
_IMAGE_OF = (
    "CROSS JOIN LATERAL (SELECT dataset_id, queue_held FROM images"
    " WHERE id = {row}.image_id OFFSET 0) i"
)

_ADD_COUNTS = (
    " ON CONFLICT (dataset_id, held) DO UPDATE SET images = queue_counts.images + EXCLUDED.images"
)
_ADD_TOUCHED = (
    " ON CONFLICT (annotator_id, dataset_id, held)"
    " DO UPDATE SET images = queue_touched.images + EXCLUDED.images"
)

# PostgreSQL: (name, table, event, body). Upserts are ordered by key, so two transactions
# take the counter rows' locks in the same order.
_PG: list[tuple[str, str, str, str]] = [
    (
        "queue_images_inserted",
        "images",
        "INSERT",
        "INSERT INTO queue_counts (dataset_id, held, images) "
        "SELECT dataset_id, queue_held, count(*) FROM new_rows "
        "GROUP BY dataset_id, queue_held ORDER BY dataset_id, queue_held" + _ADD_COUNTS + ";",
    ),
    (
        "queue_images_deleted",
        "images",
        "DELETE",
        "UPDATE queue_counts q SET images = q.images - d.n "
        "FROM (SELECT dataset_id, queue_held, count(*) AS n FROM old_rows "
        "GROUP BY dataset_id, queue_held) d "
        "WHERE q.dataset_id = d.dataset_id AND q.held = d.queue_held;",
    ),
    (
        "queue_images_moved",
        "images",
        "UPDATE",
        "INSERT INTO queue_counts (dataset_id, held, images) "
        "SELECT dataset_id, held, sum(n) FROM ("
        " SELECT o.dataset_id, o.queue_held AS held, -1 AS n"
        " FROM old_rows o JOIN new_rows w ON w.id = o.id WHERE o.queue_held <> w.queue_held"
        " UNION ALL"
        " SELECT w.dataset_id, w.queue_held, 1"
        " FROM old_rows o JOIN new_rows w ON w.id = o.id WHERE o.queue_held <> w.queue_held"
        ") d GROUP BY dataset_id, held ORDER BY dataset_id, held" + _ADD_COUNTS + ";\n"
        "INSERT INTO queue_touched (annotator_id, dataset_id, held, images) "
        "SELECT t.annotator_id, d.dataset_id, d.held, sum(d.n) FROM ("
        " SELECT o.id, o.dataset_id, o.queue_held AS held, -1 AS n"
        " FROM old_rows o JOIN new_rows w ON w.id = o.id WHERE o.queue_held <> w.queue_held"
        " UNION ALL"
        " SELECT w.id, w.dataset_id, w.queue_held, 1"
        " FROM old_rows o JOIN new_rows w ON w.id = o.id WHERE o.queue_held <> w.queue_held"
        ") d CROSS JOIN LATERAL (" + _TOUCHERS_OF.format(id="d.id") + ") t "
        "GROUP BY t.annotator_id, d.dataset_id, d.held "
        "ORDER BY t.annotator_id, d.dataset_id, d.held" + _ADD_TOUCHED + ";",
    ),
    (
        "queue_annotations_added",
        "annotations",
        "INSERT",
        "INSERT INTO queue_touched (annotator_id, dataset_id, held, images) "
        "SELECT a.annotator_id, i.dataset_id, i.queue_held, count(*) "
        "FROM new_rows a " + _IMAGE_OF.format(row="a") + " "
        "WHERE NOT EXISTS (SELECT 1 FROM skips s "
        " WHERE s.image_id = a.image_id AND s.annotator_id = a.annotator_id) "
        "GROUP BY a.annotator_id, i.dataset_id, i.queue_held "
        "ORDER BY a.annotator_id, i.dataset_id, i.queue_held" + _ADD_TOUCHED + ";",
    ),
    (
        "queue_annotations_removed",
        "annotations",
        "DELETE",
        "UPDATE queue_touched q SET images = q.images - d.n FROM ("
        " SELECT a.annotator_id, i.dataset_id, i.queue_held, count(*) AS n"
        " FROM old_rows a " + _IMAGE_OF.format(row="a") + " WHERE NOT EXISTS (SELECT 1 FROM skips s"
        "  WHERE s.image_id = a.image_id AND s.annotator_id = a.annotator_id)"
        " GROUP BY a.annotator_id, i.dataset_id, i.queue_held) d "
        "WHERE q.annotator_id = d.annotator_id AND q.dataset_id = d.dataset_id "
        "AND q.held = d.queue_held;",
    ),
    (
        "queue_skips_added",
        "skips",
        "INSERT",
        "INSERT INTO queue_touched (annotator_id, dataset_id, held, images) "
        "SELECT s.annotator_id, i.dataset_id, i.queue_held, count(*) "
        "FROM new_rows s " + _IMAGE_OF.format(row="s") + " "
        "WHERE NOT EXISTS (SELECT 1 FROM annotations a "
        " WHERE a.image_id = s.image_id AND a.annotator_id = s.annotator_id) "
        "GROUP BY s.annotator_id, i.dataset_id, i.queue_held "
        "ORDER BY s.annotator_id, i.dataset_id, i.queue_held" + _ADD_TOUCHED + ";",
    ),
    (
        "queue_skips_removed",
        "skips",
        "DELETE",
        "UPDATE queue_touched q SET images = q.images - d.n FROM ("
        " SELECT s.annotator_id, i.dataset_id, i.queue_held, count(*) AS n"
        " FROM old_rows s "
        + _IMAGE_OF.format(row="s")
        + " WHERE NOT EXISTS (SELECT 1 FROM annotations a"
        "  WHERE a.image_id = s.image_id AND a.annotator_id = s.annotator_id)"
        " GROUP BY s.annotator_id, i.dataset_id, i.queue_held) d "
        "WHERE q.annotator_id = d.annotator_id AND q.dataset_id = d.dataset_id "
        "AND q.held = d.queue_held;",
    ),
]

_SQLITE: list[str] = [
    """
    CREATE TRIGGER queue_images_inserted AFTER INSERT ON images BEGIN
      INSERT INTO queue_counts (dataset_id, held, images)
      VALUES (NEW.dataset_id, NEW.queue_held, 1)
      ON CONFLICT (dataset_id, held) DO UPDATE SET images = images + 1;
    END
    """,
    """
    CREATE TRIGGER queue_images_deleted AFTER DELETE ON images BEGIN
      UPDATE queue_counts SET images = images - 1
      WHERE dataset_id = OLD.dataset_id AND held = OLD.queue_held;
    END
    """,
    f"""
    CREATE TRIGGER queue_images_moved AFTER UPDATE OF queue_held ON images
    WHEN OLD.queue_held <> NEW.queue_held BEGIN
      UPDATE queue_counts SET images = images - 1
      WHERE dataset_id = OLD.dataset_id AND held = OLD.queue_held;
      INSERT INTO queue_counts (dataset_id, held, images)
      VALUES (NEW.dataset_id, NEW.queue_held, 1)
      ON CONFLICT (dataset_id, held) DO UPDATE SET images = images + 1;
      UPDATE queue_touched SET images = images - 1
      WHERE dataset_id = OLD.dataset_id AND held = OLD.queue_held
        AND annotator_id IN ({_TOUCHERS_OF.format(id="OLD.id")});
      INSERT INTO queue_touched (annotator_id, dataset_id, held, images)
      SELECT annotator_id, NEW.dataset_id, NEW.queue_held, 1
      FROM ({_TOUCHERS_OF.format(id="NEW.id")}) WHERE true
      ON CONFLICT (annotator_id, dataset_id, held) DO UPDATE SET images = images + 1;
    END
    """,
]


def _sqlite_touch_triggers(table: str, other: str) -> list[str]:
    """A row of `table` (annotations or skips) counts its image as touched by its annotator
    unless a row of `other` for the same image and annotator already does."""
    return [
        f"""
    CREATE TRIGGER queue_{table}_added AFTER INSERT ON {table}
    WHEN NOT EXISTS (SELECT 1 FROM {other}
                     WHERE image_id = NEW.image_id AND annotator_id = NEW.annotator_id) BEGIN
      INSERT INTO queue_touched (annotator_id, dataset_id, held, images)
      SELECT NEW.annotator_id, dataset_id, queue_held, 1 FROM images WHERE id = NEW.image_id
      ON CONFLICT (annotator_id, dataset_id, held) DO UPDATE SET images = images + 1;
    END
    """,
        f"""
    CREATE TRIGGER queue_{table}_removed AFTER DELETE ON {table}
    WHEN NOT EXISTS (SELECT 1 FROM {other}
                     WHERE image_id = OLD.image_id AND annotator_id = OLD.annotator_id) BEGIN
      UPDATE queue_touched SET images = images - 1
      WHERE annotator_id = OLD.annotator_id
        AND (dataset_id, held) =
            (SELECT dataset_id, queue_held FROM images WHERE id = OLD.image_id);
    END
    """,
    ]


_SQLITE += _sqlite_touch_triggers("annotations", "skips")
_SQLITE += _sqlite_touch_triggers("skips", "annotations")


def _pg_transition(event: str) -> str:
    return {
        "INSERT": "REFERENCING NEW TABLE AS new_rows",
        "DELETE": "REFERENCING OLD TABLE AS old_rows",
        "UPDATE": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    }[event]


def upgrade() -> None:
    op.create_table(
        "queue_counts",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_queue_counts_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", "held", name=op.f("pk_queue_counts")),
    )
    op.create_table(
        "queue_touched",
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["users.id"],
            name=op.f("fk_queue_touched_annotator_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_queue_touched_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "annotator_id", "dataset_id", "held", name=op.f("pk_queue_touched")
        ),
    )
    for statement in _BACKFILL:
        op.execute(statement)
    if op.get_bind().dialect.name == "postgresql":
        for name, table, event, body in _PG:
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n{body}\nRETURN NULL;\nEND $$"
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} {_pg_transition(event)} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
    else:
        for statement in _SQLITE:
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, table, _, _ in _PG:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgresql else ""))
        if postgresql:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("queue_touched")
    op.drop_table("queue_counts")
