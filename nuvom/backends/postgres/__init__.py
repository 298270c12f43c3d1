"""The PostgreSQL engine: many worker hosts on one schema, ``SKIP LOCKED`` claims, ``NOTIFY``.

The runtime opens one connection pool per DSN and schema, shared by the queue
and results so each step commits in one transaction.
"""
