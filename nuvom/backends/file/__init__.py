"""The file engine: one plain file per job and per record, changed by atomic renames."""
