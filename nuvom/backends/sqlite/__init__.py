"""The SQLite engine, nuvom's default: queue and results in one embedded database file.

The runtime opens one store per file, so a queue and results on the same file
share it and commit each step in one transaction.
"""
