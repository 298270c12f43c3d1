"""The file engine: one plain file per job and per record, changed by atomic renames."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
    from nuvom.runtime import Runtime


def build_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.backends.file.queue import FileJobQueue

    settings = runtime.settings
    return FileJobQueue(
        settings.file_queue_dir,
        codec=runtime.codec,
        clock=runtime.clock,
        synchronous=settings.file_synchronous,
    )


def build_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.backends.file.results import FileResultBackend, results_dir_beside

    settings = runtime.settings
    return FileResultBackend(
        results_dir_beside(settings.file_queue_dir),
        codec=runtime.codec,
        clock=runtime.clock,
        synchronous=settings.file_synchronous,
    )
