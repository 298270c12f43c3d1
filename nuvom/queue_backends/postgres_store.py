"""The PostgreSQL store; it lives in ``nuvom.backends.postgres``."""

from nuvom.backends.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
