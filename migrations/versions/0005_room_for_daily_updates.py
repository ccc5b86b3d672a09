"""PostgreSQL only: leave room in the pages of installation (15%) and device (50%), so the
daily scan's updates stay on their page ("HOT" updates: no new entry in any index).

The scan updates ~4% of the installation rows every day (a new version, a removal: no indexed
column changes) and every device row (last_seen). In pages packed full, each of those updates
writes the new row version to another page plus an entry in every index (five on
installation). On the 2M-row reference store the daily scan's writes took 13.6 s packed and
4.4 s with this room (benchmarks/README.md). SQLite has no such setting.

The setting applies to pages written from now on; `VACUUM FULL installation` (it locks the
table while it rewrites it) gives an existing store the room at once.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = {"installation": 85, "device": 50}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, percent in FILLFACTOR.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FILLFACTOR:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
