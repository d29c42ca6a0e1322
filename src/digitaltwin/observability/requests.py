"""Request ids and the access log.

Every HTTP request gets an id: the caller's ``X-Request-ID`` when it is a sane token
(1-128 characters of ``A-Z a-z 0-9 . _ : -``, so a header cannot inject into log lines),
otherwise a fresh UUID4 hex. The id is

* returned in the response's ``X-Request-ID`` header,
* put into :data:`digitaltwin.observability.logs.REQUEST_ID`, so every log line written while
  serving the request carries it,
* written with one ``access.log`` record per request: method, route template, path (never the
  query string, which may carry tokens), status, duration in milliseconds and client address
  (the one the rate limiter resolved: the TCP peer, or behind ``TRUSTED_PROXIES`` the
  right-most untrusted ``X-Forwarded-For`` hop).

Unhandled exceptions are logged with their traceback to ``error.log`` before they propagate.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitaltwin.observability.logs import ACCESS_LOG, REQUEST_ID

HEADER = "X-Request-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = logging.getLogger(__name__)
_X_REQUEST_ID = b"x-request-id"


def given_request_id(scope: Scope) -> str | None:
    """The caller's ``X-Request-ID`` if valid, else None (the middleware then uses a new UUID4 hex)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _VALID.fullmatch(text):
                return text
            break
    return None


class RequestIdMiddleware:
    """Pure ASGI middleware: request id in context and response header, one access-log record per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = given_request_id(scope)
        request_id = given or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _X_REQUEST_ID]
                headers.append((_X_REQUEST_ID, request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            raise
        finally:
            client = scope.get("client")
            ACCESS_LOG.write(
                request_id=request_id,
                request_id_given=given is not None,
                method=scope.get("method"),
                route=getattr(scope.get("route"), "path", None),
                path=scope.get("path"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
                client=scope.get("state", {}).get("client_ip") or (client[0] if client else None),
            )
            REQUEST_ID.reset(token)
