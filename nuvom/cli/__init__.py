"""The ``nuvom`` command line (Typer + Rich). The only layer, with ``dashboard/``, that prints."""
