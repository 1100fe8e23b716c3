"""Alembic environment: the URL comes from the caller (app.migrate), the schema from app.models."""

from alembic import context
from sqlalchemy import create_engine

from app.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connectable = config.attributes.get("connection") or create_engine(url)
    with connectable.connect() if hasattr(connectable, "connect") else connectable as connection:
        # render_as_batch: SQLite cannot ALTER most columns in place; batch mode copies the table.
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
