"""0006 (2026-12-03, after 0005):
study_changes: extensions and retries of a stored study, with their Idempotency-Keys.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"


def upgrade() -> None:
    op.create_table(
        "study_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name="fk_study_changes_study_id_studies",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_study_changes"),
        sa.UniqueConstraint("kind", "idempotency_key", name="uq_study_changes_kind_key"),
    )
    op.create_index("ix_study_changes_study_id", "study_changes", ["study_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_study_changes_study_id", table_name="study_changes")
    op.drop_table("study_changes")
