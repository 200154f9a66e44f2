"""trials: covering index for the study summary (GROUP BY cell and learning rate)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = [
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


def upgrade() -> None:
    op.create_index("ix_trials_study_summary", "trials", COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index("ix_trials_study_summary", table_name="trials")
