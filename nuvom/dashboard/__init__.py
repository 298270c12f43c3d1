"""nuvom's web dashboard: the store's queues, jobs, workers, schedules and workflows in a
browser, and the CLI's actions on them (``nuvom dashboard``; ``pip install "nuvom[dashboard]"``).

``app.create_app`` builds the ASGI app, ``app.serve`` runs it. This package's ``data`` and
``text`` modules are web-free (the CLI uses them too); only ``app``, ``views`` and ``api``
import Starlette and Jinja2, so importing ``nuvom.dashboard`` costs nothing.
"""
