"""The file result backend; it lives in ``nuvom.backends.file``."""

from nuvom.backends.file.results import FileResultBackend, results_dir_beside

__all__ = ["FileResultBackend", "results_dir_beside"]
