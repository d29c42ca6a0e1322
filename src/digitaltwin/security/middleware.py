"""Pure ASGI middleware of request hygiene: client address and rate limit, timeout, NUL guard,
body size limit, security headers.

(CORS is Starlette's ``CORSMiddleware``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qsl
from collections.abc import Sequence

import anyio
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitaltwin.security.client_address import IPNetwork, client_address, forwarded_scheme
from digitaltwin.security.policy import PUBLIC_PATHS
from digitaltwin.security.principal_cache import EPOCH_STATE_KEY
from digitaltwin.security.ratelimit import RateLimiter

log = logging.getLogger(__name__)

#: Key of the client address in ``scope["state"]`` (``request.state.client_ip``).
CLIENT_IP_KEY = "client_ip"
#: Paths under ``AUTH_RATE_LIMIT`` as well as ``API_RATE_LIMIT``: each request may cost a password check.
AUTH_LIMITED_PATHS = ("/api/v1/auth/token", "/api/v1/auth/mfa/")


async def _send_json(send: Send, status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    header_list = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    header_list += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": raw})


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a chunked body passes the limit.

    An ``HTTPException`` so FastAPI's body parsing re-raises it as it is (it turns any other
    exception into a 400 "error parsing the body") and the error handlers answer a JSON 413
    naming ``body``; :class:`BodyLimitMiddleware` answers it when it escapes them.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` (``MAX_REQUEST_BODY_BYTES``) with a JSON 413 naming ``body``.

    A declared ``Content-Length`` over the limit is refused before anything is read; a chunked body
    is counted as it arrives and refused at the first chunk past the limit, so a huge upload is never
    held in memory. The rule is Starlette's ``RequestBodyLimitMiddleware``'s; this one answers in the
    product's error shape (``{"detail", "field"}``) instead of plain text, and must be the innermost
    middleware so the request log and metrics see a 413, not an exception.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = {"detail": f"request body larger than {self.max_bytes} bytes", "field": "body"}
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, detail)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(str(detail["detail"]))
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if started:
                raise
            await _send_json(send, 413, detail)


class RateLimitMiddleware:
    """Resolves the client address (into ``request.state.client_ip``) and applies ``API_RATE_LIMIT``,
    and ``AUTH_RATE_LIMIT`` on the login and MFA routes (:data:`AUTH_LIMITED_PATHS`).

    ``/healthz``, ``/readyz`` and ``/metrics`` are not limited, so probes and scrapes never
    eat a client's budget or get refused.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter, trusted_proxies: Sequence[IPNetwork]) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        request_headers = Headers(scope=scope)
        peer_host = peer[0] if peer else None
        address = client_address(peer_host, request_headers.getlist("x-forwarded-for"), self.trusted_proxies)
        scope.setdefault("state", {})[CLIENT_IP_KEY] = address
        scheme = forwarded_scheme(peer_host, request_headers.get("x-forwarded-proto"), self.trusted_proxies)
        if scheme is not None:  # what uvicorn's proxy headers did, limited to TRUSTED_PROXIES
            scope["scheme"] = scheme
        if scope.get("path") in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        decision = await self.limiter.hit_api(address)
        if decision.epoch is not None:  # read along with the count: the session check needs no round trip
            scope["state"][EPOCH_STATE_KEY] = decision.epoch
        headers = decision.headers(self.limiter.api_window_s)
        path = scope.get("path", "")
        if decision.allowed and (path == AUTH_LIMITED_PATHS[0] or path.startswith(AUTH_LIMITED_PATHS[1])):
            decision = await self.limiter.hit_auth(address)
            headers = decision.headers(self.limiter.api_window_s)
        if not decision.allowed:
            detail = f"rate limit of {decision.limit} requests per minute exceeded; retry after {headers['Retry-After']} s"
            await _send_json(send, 429, {"detail": detail, "field": None}, headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableHeaders(scope=message)
                for key, value in headers.items():
                    mutable[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: Added to a write's 504: the handler may still finish (e.g. a training stores its model).
WRITE_TIMEOUT_NOTE = (
    "; the server may still complete it (a training still stores its model and may promote it): "
    "check the outcome before retrying"
)


class TimeoutMiddleware:
    """Answers 504 when a handler has not started its response within ``timeout_s`` (``API_TIMEOUT``).

    A streaming response that has started is not cut. The handler is cancelled; a
    synchronous handler already running in a worker thread finishes there, but its result is
    discarded: so a write (any method but GET, HEAD, OPTIONS) answered 504 may still take
    effect, which its detail says (:data:`WRITE_TIMEOUT_NOTE`).

    The handler runs in the request's own task inside an anyio cancel scope, watched by an
    event-loop timer; only when the timer fires is a task started, which answers the 504 and
    then cancels the scope (answer first: a handler in a worker thread is only waited for
    afterwards). A task group per request, as before, cost a task, two events and three cancel
    scopes on every request, about as much as a bare FastAPI request.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        timed_out = False
        answering: asyncio.Task[None] | None = None
        cancel_scope = anyio.CancelScope()

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the 504 went out: the handler's messages are dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def answer_504() -> None:
            try:
                log.warning("%s %s exceeded API_TIMEOUT=%ss", scope.get("method"), scope.get("path"), self.timeout_s)
                detail = f"request took longer than {self.timeout_s:g} s"
                if scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
                    detail += WRITE_TIMEOUT_NOTE
                await _send_json(send, 504, {"detail": detail, "field": None})
            finally:
                cancel_scope.cancel()

        def on_timeout() -> None:
            nonlocal timed_out, answering
            if started:
                return
            timed_out = True
            answering = asyncio.get_running_loop().create_task(answer_504())

        timer = asyncio.get_running_loop().call_later(self.timeout_s, on_timeout)
        try:
            with cancel_scope:
                await self.app(scope, receive, guarded_send)
        finally:
            timer.cancel()
            if answering is not None:
                await answering


class NulByteGuardMiddleware:
    """Answers 422 naming the parameter when the path or the query string contains a NUL character.

    No identifier of the product can contain one, and PostgreSQL text cannot store one
    (a NUL reaching a query is a database error, i.e. a 500).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field = None
            if "\x00" in scope.get("path", ""):
                field = "path"
            elif b"%00" in scope.get("query_string", b"") or b"\x00" in scope.get("query_string", b""):
                pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
                field = next((name for name, value in pairs if "\x00" in name or "\x00" in value), "query")
            if field is not None:
                await _send_json(send, 422, {"detail": "NUL characters are not allowed", "field": field})
                return
        await self.app(scope, receive, send)


#: Headers set on every response (OWASP Secure Headers Project recommendations for APIs).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
#: CSP of API responses; the docs pages set their own (api/docs_pages.py: same-origin scripts, a nonce).
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
#: HSTS on HTTPS requests (the ASGI scheme; behind a proxy in TRUSTED_PROXIES, its X-Forwarded-Proto).
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS`, a CSP, ``Cache-Control: no-store`` on auth answers, and HSTS over HTTPS.

    A header the response already has is kept (as ``setdefault`` would); ``Cache-Control`` on
    ``/api/v1/auth/`` answers is replaced. The raw header pairs are encoded once, here.
    """

    _DEFAULTS = tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items())
    _CSP = (b"content-security-policy", API_CSP.encode("latin-1"))
    _HSTS = (b"strict-transport-security", HSTS.encode("latin-1"))
    _NO_STORE = (b"cache-control", b"no-store")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        added = list(self._DEFAULTS)
        if path not in DOCS_PATHS:
            added.append(self._CSP)
        if scope.get("scheme") == "https":
            added.append(self._HSTS)
        no_store = path.startswith("/api/v1/auth/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if no_store:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append(self._NO_STORE)
                present = {k.lower() for k, _ in headers}
                headers.extend(pair for pair in added if pair[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
