"""The ``nuvom`` command line (Typer + Rich): the only part of nuvom that prints."""
