"""0002 (2026-12-02, after 0001):
trials: covering index for the study summary (GROUP BY cell and learning rate).
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"

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
