"""Sample tasks for ``nuvom demo``."""
