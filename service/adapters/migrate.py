"""Bring a database to the newest schema with the Alembic scripts shipped in the package.

Every worker may call ``upgrade(url)`` at start-up: the first one migrates while the others
wait on a lock, then find nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Engine

from service.adapters.ledger_sql import make_engine, read_connection

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any fixed 64-bit number; this one is "invoice-collector migrations" to this project alone.
# pg_advisory_xact_lock is database-wide and released at COMMIT/ROLLBACK, even on a crash.
PG_MIGRATION_LOCK_KEY = 0x1C_0DE_0001


def alembic_config() -> Config:
    """An Alembic Config pointing at the packaged scripts; no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(url: str | URL | Engine, revision: str = "head") -> None:
    """Run ``alembic upgrade <revision>``; safe to call from several processes at once."""
    engine = url if isinstance(url, Engine) else make_engine(url)
    try:
        # On SQLite this BEGIN is IMMEDIATE (see make_engine): the file's write lock is the
        # migration lock. Everything below, the version check included, runs under the lock.
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK_KEY)))
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        if engine is not url:
            engine.dispose()


def current_revision(url: str | URL | Engine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = url if isinstance(url, Engine) else make_engine(url)
    try:
        with read_connection(engine) as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if engine is not url:
            engine.dispose()


def head_revision() -> str | None:
    """The newest revision shipped in the package."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
