"""The dashboard's ASGI app: routes (``views`` for people, ``api`` for scripts), templates,
static files, error pages, behind the ``security.Guard``; and ``serve``, which runs it.

Every request reads the store afresh through the process-wide runtime
(``nuvom.runtime.current()``): the dashboard keeps no state of its own but its CSRF secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import errno
import json
import logging
import math
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from nuvom.dashboard.events import Hub
from nuvom.dashboard.fresh import Fresh
from nuvom.dashboard.security import CSRF_FIELD, Guard, check_bind, is_loopback, new_csrf_token
from nuvom.errors import (
    BackendError,
    BackendUnavailable,
    CorruptJob,
    JobNotFound,
    JobStateError,
    NuvomError,
)
from nuvom.wording import relative, span

log = logging.getLogger("nuvom.dashboard")

HERE = Path(__file__).parent
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8181
FLASH_COOKIE = "nuvom_dashboard_flash"  # the sentence an action leaves for the next page


@dataclass(frozen=True, slots=True)
class Options:
    """How this dashboard was started."""

    csrf_token: str
    read_only: bool = False
    token_required: bool = False


# -- errors -------------------------------------------------------------------------------------
def status_of(exc: Exception) -> int:
    """The HTTP status an action's or a read's refusal answers with."""
    from nuvom.store_view import NotFound, Refused

    if isinstance(exc, JobNotFound | NotFound):
        return 404
    if isinstance(exc, JobStateError | CorruptJob):  # a dead letter that still cannot be read
        return 409
    if isinstance(exc, BackendUnavailable):
        return 503
    if isinstance(exc, BackendError):
        return 501
    if isinstance(exc, Refused):
        return 400
    return 400


def to_json(data: Any) -> bytes:
    """JSON of anything a job carries: datetimes as ISO text, bytes as base64, sets sorted,
    ``NaN``/``Infinity`` as text, whatever else as its ``repr``."""
    try:
        return json.dumps(data, default=_plain, ensure_ascii=False, allow_nan=False).encode()
    except ValueError:  # a float JSON cannot hold, somewhere in a result
        return json.dumps(_finite(data), default=_plain, ensure_ascii=False).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.date | dt.time):  # a datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | decimal.Decimal | PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        try:
            return sorted(value)
        except TypeError:  # mixed types: an order that at least repeats
            return sorted(value, key=_safe_repr)
    return _safe_repr(value)


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return to_json(content)


# -- rendering ----------------------------------------------------------------------------------
def _utc(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def _took(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s" if value < 60 else span(value)


def _number(value: int | float | None) -> str:
    return "-" if value is None else f"{value:,}"


def _coord(value: float) -> str:
    """An SVG coordinate: one decimal is plenty."""
    return f"{value:.1f}"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__name__}: repr failed with {type(exc).__name__}>"


def templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(utc=_utc, iso=_iso, took=_took, number=_number, show=_safe_repr,
                       relative=relative, c=_coord, pct=lambda v: f"{v * 100:.2f}%")  # fmt: skip
    env.globals.update(CSRF_FIELD=CSRF_FIELD)
    return Jinja2Templates(env=env)


def flash_of(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {"kind": str(data.get("kind", "ok")), "text": str(data.get("text", ""))}


def redirect(to: str, text: str, kind: str = "ok") -> Response:
    """303 to ``to``, leaving ``text`` for that page to show once."""
    response = RedirectResponse(to, status_code=303)
    value = base64.urlsafe_b64encode(json.dumps({"kind": kind, "text": text}).encode()).decode()
    response.set_cookie(FLASH_COOKIE, value, max_age=60, httponly=True, samesite="strict")
    return response


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    """``name`` with the context every page has; the flash shown once, then cleared."""
    from nuvom.runtime import current
    from nuvom.store_view import store_place

    options: Options = request.app.state.options
    runtime = current()
    flash = flash_of(request) if not request.headers.get("hx-request") else None
    base = {
        "request": request,
        "csrf_token": options.csrf_token,
        "read_only": options.read_only,
        "token_required": options.token_required,
        "flash": flash,
        "now": runtime.clock.time(),
        "queue_backend": runtime.settings.queue_backend,
        "result_backend": runtime.settings.result_backend,
        "store": store_place(runtime.settings, "queue").label,
        "path": request.url.path,
    }
    tpl: Jinja2Templates = request.app.state.templates
    response = tpl.TemplateResponse(request, name, {**base, **context}, status_code=status_code)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE)
    return response


def error_page(request: Request, exc: Exception) -> Response:
    code = status_of(exc) if isinstance(exc, NuvomError) else 500
    if request.url.path.startswith("/api/"):
        return JSON({"error": str(exc)}, status_code=code)
    return render(request, "error.html", {"message": str(exc), "code": code}, status_code=code)


async def _nuvom_error(request: Request, exc: Exception) -> Response:
    return error_page(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    context = {"message": exc.detail, "code": exc.status_code}
    response = render(request, "error.html", context, status_code=exc.status_code)
    response.headers.update(exc.headers or {})  # a 405's Allow
    return response


# -- the app ------------------------------------------------------------------------------------
def create_app(
    *,
    token: str | None = None,
    read_only: bool = False,
    loopback: bool = True,
    events: Hub | None = None,
) -> Guard:
    """The dashboard as an ASGI app, on the process-wide runtime (``nuvom.configure`` it
    first in tests). ``token``: every request must carry it; ``loopback``: it listens on
    this machine only, so ``Host`` must name it; ``events``: the poller behind its live
    streams (``stop`` it to end them)."""
    from nuvom.dashboard.api import routes as api_routes
    from nuvom.dashboard.views import routes as page_routes

    csrf_token = new_csrf_token()
    app = Starlette(
        routes=[
            *page_routes(),
            *api_routes(),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={NuvomError: _nuvom_error, HTTPException: _http_error},
    )
    app.state.options = Options(csrf_token, read_only, token is not None)
    app.state.templates = templates()
    app.state.events = events or Hub()  # the one poller behind every /api/events stream
    app.state.counts = Fresh(_status_counts)  # kept a moment: a count of every record
    return Guard(app, token=token, csrf_token=csrf_token, loopback=loopback, read_only=read_only)


def _status_counts() -> dict[str, int] | None:
    from nuvom.runtime import current

    return current().results.status_counts()


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free one); ``ConfigError`` if it cannot."""
    from nuvom.errors import ConfigError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        taken = exc.errno == errno.EADDRINUSE
        hint = " (another program listens there: pick another --port)" if taken else ""
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


SHUTDOWN_SECS = 5  # the longest a stop waits for open requests (live streams end at once)


def _end_streams_on_exit(server: Any, hub: Hub) -> None:
    """On CTRL+C / SIGTERM, end the live streams too: uvicorn waits for open connections
    before it exits, and an event stream never closes by itself."""
    exit_server = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        hub.stop()  # a flag: safe in a signal handler
        exit_server(sig, frame)

    server.handle_exit = handle_exit  # uvicorn installs this as the signal handler


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    token: str | None = None,
    read_only: bool = False,
    announce: Any = None,
) -> None:
    """Run the dashboard until CTRL+C. Refuses (``ConfigError``) to listen off loopback
    without a token. ``announce(url)`` is told the address once it listens."""
    import uvicorn

    check_bind(host, token)
    sock = listen(host, port)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    hub = Hub()
    app = create_app(token=token, read_only=read_only, loopback=is_loopback(host), events=hub)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            server_header=False, proxy_headers=False,
                            timeout_graceful_shutdown=SHUTDOWN_SECS)  # fmt: skip
    server = uvicorn.Server(config)
    _end_streams_on_exit(server, hub)
    if announce is not None:
        announce(f"http://{shown}:{actual}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
