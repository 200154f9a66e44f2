"""study_cells.result: each cell's summary part, stored with the version it was computed at

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, nothing stored yet: the first summary of each study computes and stores them.
    with op.batch_alter_table("study_cells") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("result_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("study_cells") as batch:
        batch.drop_column("result_version")
        batch.drop_column("result")
