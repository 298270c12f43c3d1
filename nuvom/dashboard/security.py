"""The dashboard's guard: who may ask (a token, off loopback), which writes are the user's
own (a CSRF token on every POST), and the headers that keep a page what it is.

An ASGI middleware in front of every route, static files included, so no route can forget.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode

from nuvom.errors import ConfigError

log = logging.getLogger("nuvom.dashboard")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "nuvom_dashboard_token"
TOKEN_PARAM = "token"  # ?token=... once: sets the cookie, then the address drops it
CSRF_FIELD = "csrf_token"  # the hidden field of every form
CSRF_HEADER = "x-csrf-token"  # what htmx and scripts send instead
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_BYTES = 1024 * 1024  # a form body the guard reads to find the CSRF field
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# No inline script or style anywhere: htmx and the stylesheet come from /static; the one
# inline style (the sign-in page, which cannot load /static without the token) by hash.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' {extra}; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
SIGN_IN_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;color:#1f2937;background:#f6f7f9;margin:0}"
    "main{max-width:26rem;margin:12vh auto;padding:2rem;background:#fff;border:1px solid #e5e7eb;"
    "border-radius:10px}h1{font-size:1.25rem;margin:0 0 .5rem}input{width:100%;padding:.5rem;"
    "margin:.75rem 0;border:1px solid #cbd5e1;border-radius:6px;box-sizing:border-box}"
    "button{padding:.5rem 1rem;border:0;border-radius:6px;background:#4f46e5;color:#fff}"
    "p{color:#4b5563}"
)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the dashboard on this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse (``ConfigError``) to listen off loopback without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"the dashboard will not listen on {host} without a token: anyone who reaches it "
            "could retry, cancel and purge jobs (pass --token or set NUVOM_DASHBOARD_TOKEN, "
            "or keep the default --host 127.0.0.1)",
            variable="NUVOM_DASHBOARD_TOKEN",
        )


def _same(given: str, expected: str) -> bool:
    # Digests first: compare_digest wants equal-length ASCII; this takes any text in
    # constant time.
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    )


class Guard:
    """Checks every request before the app sees it, and adds the security headers.

    - ``Host`` must name this machine when it listens on loopback (a DNS-rebinding page
      cannot read it through another name);
    - with a token, each request carries it: the cookie that ``?token=`` sets once, or
      ``Authorization: Bearer``; else 401;
    - every POST/PUT/PATCH/DELETE carries the CSRF token (form field or ``X-CSRF-Token``),
      unless it authenticated with a Bearer header (no ambient credential); else 403;
    - ``read_only``: every such request is refused (403).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        csrf_token: str,
        loopback: bool,
        read_only: bool = False,
    ) -> None:
        self.app = app
        self.token = token or None
        self.csrf_token = csrf_token
        self.loopback = loopback
        self.read_only = read_only
        style_hash = hashlib.sha256(SIGN_IN_STYLE.encode()).digest()
        self.csp = CSP.format(extra=f"'sha256-{base64.b64encode(style_hash).decode()}'")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_headers(send, cacheable=scope.get("path", "").startswith("/static/"))
        headers = _headers(scope)
        if self.loopback and not _host_is_local(headers.get("host", "")):
            await _plain(send, 421, "this dashboard answers only to localhost / 127.0.0.1")
            return
        bearer = _bearer(headers)
        if self.token is not None:
            verdict = await self._authenticate(scope, headers, bearer, send)
            if not verdict:
                return
        method = scope["method"].upper()
        if method in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if self.read_only:
            await _refuse(scope, send, 403, "the dashboard runs read-only (--read-only)")
            return
        if not _origin_matches(headers):
            await _refuse(scope, send, 403, "cross-site request refused (Origin mismatch)")
            return
        if bearer is not None and self.token is not None:  # a script with the token: no cookie
            await self.app(scope, receive, send)
            return
        receive, given = await self._csrf_of(headers, receive)
        if given is None or not _same(given, self.csrf_token):
            await _refuse(scope, send, 403, "missing or wrong CSRF token: reload the page")
            return
        await self.app(scope, receive, send)

    async def _authenticate(
        self, scope: Scope, headers: dict[str, str], bearer: str | None, send: Send
    ) -> bool:
        assert self.token is not None
        if bearer is not None:
            if _same(bearer, self.token):
                return True
            await _refuse(scope, send, 401, "wrong token")
            return False
        cookie = _cookies(headers).get(TOKEN_COOKIE)
        if cookie is not None and _same(cookie, cookie_value(self.token)):
            return True
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = (query.pop(TOKEN_PARAM, None) or [None])[0]
        if given is not None and scope["method"] in ("GET", "HEAD") and _same(given, self.token):
            # Set the cookie and drop the token from the address bar (and from history).
            rest = urlencode([(k, v) for k, values in query.items() for v in values])
            where = scope.get("path", "/") + (f"?{rest}" if rest else "")
            cookie_line = (
                f"{TOKEN_COOKIE}={cookie_value(self.token)}; Path=/; HttpOnly; SameSite=Strict"
                + ("; Secure" if scope.get("scheme") == "https" else "")
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [
                        (b"location", where.encode("latin-1", "replace")),
                        (b"set-cookie", cookie_line.encode("latin-1")),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return False
        if given is not None:
            log.warning("dashboard: wrong token from %s", _client(scope))
        await self._sign_in(scope, send, wrong=given is not None)
        return False

    async def _sign_in(self, scope: Scope, send: Send, *, wrong: bool) -> None:
        if scope.get("path", "").startswith("/api/") or "html" not in _headers(scope).get(
            "accept", "html"
        ):
            await _json(send, 401, {"error": "this dashboard needs its token (Authorization: "
                                             "Bearer <token>)"})  # fmt: skip
            return
        note = "<p>That token is not the right one.</p>" if wrong else ""
        body = (
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>nuvom dashboard"
            f"</title><style>{SIGN_IN_STYLE}</style></head><body><main><h1>nuvom dashboard</h1>"
            "<p>This dashboard asks for the token it was started with "
            "(<code>--token</code> or <code>NUVOM_DASHBOARD_TOKEN</code>).</p>"
            f"{note}<form method=get><label>Token<input name={TOKEN_PARAM} type=password "
            "autocomplete=current-password autofocus required></label>"
            "<button>Sign in</button></form></main></body></html>"
        )
        await _respond(send, 401, body.encode(), b"text/html; charset=utf-8",
                       [(b"www-authenticate", b'Bearer realm="nuvom"')])  # fmt: skip

    async def _csrf_of(
        self, headers: dict[str, str], receive: Receive
    ) -> tuple[Receive, str | None]:
        """The CSRF token the request carries, and a ``receive`` that replays its body."""
        given = headers.get(CSRF_HEADER)
        if given is not None:
            return receive, given
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return receive, None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_FORM_BYTES:
                return receive, None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        fields = parse_qs(body.decode("utf-8", "replace"))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        values = fields.get(CSRF_FIELD)
        return replay, values[0] if values else None

    def _with_headers(self, send: Send, *, cacheable: bool) -> Send:
        """``send`` with the security headers added; pages are never cached (they show the
        store as it is), the static files may be (revalidated by their ETag)."""
        csp = self.csp.encode()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", csp),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-cache" if cacheable else b"no-store"),
                ]
                have = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in extra if k not in have
                ]
            await send(message)

        return sending


def cookie_value(token: str) -> str:
    """What the sign-in cookie holds: derived from the token (cookie-safe, and not the token
    itself should a cookie leak into a log)."""
    return hmac.new(token.encode("utf-8"), b"nuvom dashboard cookie", hashlib.sha256).hexdigest()


def new_csrf_token() -> str:
    """The per-process secret every form and htmx request carries back."""
    return secrets.token_urlsafe(32)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no cookie at all
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


def _bearer(headers: dict[str, str]) -> str | None:
    kind, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if kind.lower() == "bearer" and value.strip() else None


def _host_is_local(host: str) -> bool:
    """Whether a ``Host`` header (``localhost:8181``, ``[::1]:8181``) names this machine."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    return name in LOOPBACK_NAMES or is_loopback(name)


def _origin_matches(headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if origin is None or origin == "null":  # not sent, or hidden: the CSRF token decides
        return True
    return origin.partition("://")[2].rstrip("/") == headers.get("host", "")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}" if client else "?"


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    kind: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, status: int, text: str) -> None:
    await _respond(send, status, text.encode(), b"text/plain; charset=utf-8")


async def _json(send: Send, status: int, data: dict[str, Any]) -> None:
    await _respond(send, status, json.dumps(data).encode(), b"application/json")


async def _refuse(scope: Scope, send: Send, status: int, why: str) -> None:
    log.warning("dashboard: %s %s refused (%d: %s) from %s", scope.get("method"),
                scope.get("path"), status, why, _client(scope))  # fmt: skip
    if scope.get("path", "").startswith("/api/"):
        await _json(send, status, {"error": why})
    else:
        await _plain(send, status, why)
