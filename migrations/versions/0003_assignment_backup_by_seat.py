"""Backup rows indexed by (batch_id, assignment_id): a rollback and the check before a
batch's first change ask the database which seats moved since the backup (an anti-join on
this index) instead of reading every seat of the products into Python.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("assignment_backup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignment_backup_batch_id"))
        batch_op.create_index(
            "ix_assignment_backup_batch_seat", ["batch_id", "assignment_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("assignment_backup", schema=None) as batch_op:
        batch_op.drop_index("ix_assignment_backup_batch_seat")
        batch_op.create_index(
            batch_op.f("ix_assignment_backup_batch_id"), ["batch_id"], unique=False
        )
