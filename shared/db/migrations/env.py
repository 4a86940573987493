"""Alembic environment: the URL comes from the caller or DATABASE_URL, never from a file."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from shared.db.engine import sqlalchemy_url
from shared.db.models import METADATA

config = context.config
url = config.attributes.get("url") or sqlalchemy_url(os.environ.get("DATABASE_URL", ""))
if not url:
    raise SystemExit("set DATABASE_URL to the Postgres to migrate")


def run_offline() -> None:
    context.configure(url=url, target_metadata=METADATA, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool, hide_parameters=True)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=METADATA, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
