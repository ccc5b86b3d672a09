"""Alembic environment: the engine comes from licenseflow.db (or SLM_DATABASE_URL)."""

from alembic import context

from licenseflow.db import get_engine
from schemas.store import Base

config = context.config
engine = config.attributes.get("engine") or get_engine()

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
