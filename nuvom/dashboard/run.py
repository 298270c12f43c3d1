"""``nuvom dashboard``: check the web extra is installed, pick the token, listen, say where.

The command line (``nuvom/cli/main.py``) imports this only when the command runs, so
``nuvom --help`` never imports Starlette, uvicorn or Jinja2.
"""

from __future__ import annotations

import importlib.util
import signal
import sys

from nuvom.errors import ConfigError

#: What ``pip install "nuvom[dashboard]"`` brings (import names).
WEB_MODULES = ("starlette", "uvicorn", "jinja2", "multipart")


def missing_extra() -> list[str]:
    """The dashboard's modules that cannot be imported here."""
    missing = []
    for name in WEB_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, say
            found = False
        if not found:
            missing.append(name)
    return missing


def run_dashboard(*, host: str, port: int, token: str | None, read_only: bool) -> int:
    """Serve until CTRL+C; exit code 0. ``ConfigError`` (one line, exit 2) when the extra is
    missing, when off loopback with no token, or when the address cannot be taken."""
    missing = missing_extra()
    if missing:
        raise ConfigError(
            f'the dashboard needs {", ".join(missing)}: pip install "nuvom[dashboard]"'
        )
    from nuvom.dashboard.app import serve
    from nuvom.runtime import current
    from nuvom.store_view import store_place

    runtime = current()
    if token is None and runtime.settings.dashboard_token is not None:
        token = runtime.settings.dashboard_token.get_secret_value() or None
    place = store_place(runtime.settings, "queue").label

    def announce(url: str) -> None:
        sign_in = "; every request needs the token" if token else ""
        mode = "; read-only" if read_only else ""
        sys.stderr.write(
            f"nuvom dashboard on {url}  ({runtime.settings.queue_backend} in {place}"
            f"{sign_in}{mode}; CTRL+C to stop)\n"
        )
        sys.stderr.flush()

    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the
    # handler it found: make that an interrupt, so CTRL+C and a service manager's stop exit 0.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve(host, port, token=token, read_only=read_only, announce=announce)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.stderr.write("nuvom dashboard stopped\n")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
