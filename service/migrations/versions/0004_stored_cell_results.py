"""0004 (2026-12-01, after 0003):
study_cells.result: each cell's summary part, stored with the version it was computed at.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"


def upgrade() -> None:
    # Nullable, nothing stored yet: the first summary of each study computes and stores them.
    with op.batch_alter_table("study_cells") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("result_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("study_cells") as batch:
        batch.drop_column("result_version")
        batch.drop_column("result")
