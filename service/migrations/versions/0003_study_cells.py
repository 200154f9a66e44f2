"""0003 (2026-12-03, after 0002):
study_cells: a version counter per (study, cell) for incremental summaries.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    op.create_table(
        "study_cells",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("cell_key", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_study_cells_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_id", "cell_key", name=op.f("pk_study_cells")),
    )
    # Studies stored before this revision: one row per cell of their trials.
    op.execute(
        "INSERT INTO study_cells (study_id, cell_key, version) "
        "SELECT DISTINCT study_id, cell_key, 0 FROM trials"
    )


def downgrade() -> None:
    op.drop_table("study_cells")
