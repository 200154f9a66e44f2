"""0007 (2026-12-03, after 0006):
studies.owner (the API token's name) and studies.priority (higher first; fair share within).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_studies_owner", "studies", ["owner"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_studies_owner", table_name="studies")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("priority")
        batch.drop_column("owner")
