"""0005 (2026-12-02, after 0004):
trials.init_scale: the init-std multiplier of a trial's setting, in the summary's index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"

OLD_COLUMNS = [
    "study_id",
    "cell_key",
    "lr",
    "method",
    "depth",
    "width",
    "activation",
    "status",
    "seed",
    "val_acc",
    "test_acc",
]
# The summary groups by (cell, lr, init_scale): init_scale joins the key columns.
NEW_COLUMNS = [*OLD_COLUMNS[:3], "init_scale", *OLD_COLUMNS[3:]]


def upgrade() -> None:
    # Trials stored before this revision ran at their method's default init: scale 1. Stored
    # cell results computed without the scale are of an older format and are recomputed.
    op.drop_index("ix_trials_study_summary", table_name="trials")
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("init_scale", sa.Float(), nullable=True))
    op.execute("UPDATE trials SET init_scale = 1.0")
    op.create_index("ix_trials_study_summary", "trials", NEW_COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index("ix_trials_study_summary", table_name="trials")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("init_scale")
    op.create_index("ix_trials_study_summary", "trials", OLD_COLUMNS, unique=False)
