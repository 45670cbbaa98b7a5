"""Alembic environment: runs inside the connection and transaction that ``upgrade()`` opened.

``service.adapters.migrate.upgrade`` takes the cross-process lock (PostgreSQL advisory lock,
SQLite write lock) before handing its connection over in ``config.attributes["connection"]``.
Run from the ``alembic`` command line instead, it connects to ``sqlalchemy.url`` itself.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from service.adapters.ledger_sql import make_engine, metadata


def _run(connection: Connection) -> None:
    # transactional_ddl: SQLite can roll back DDL too once BEGIN is ours (see make_engine), so a
    # failed migration leaves the schema as it was on both backends.
    context.configure(
        connection=connection,
        target_metadata=metadata,
        transactional_ddl=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or call service.adapters.migrate.upgrade(url)")
    engine = make_engine(url)
    try:
        with engine.connect() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
