"""``/docs`` (Swagger UI) and ``/redoc`` served without a CDN, under a Content-Security-Policy.

FastAPI's own pages load swagger-ui and ReDoc from a CDN, unpinned and without an integrity
check, on the page where admins paste their tokens. Here the scripts and styles come from the
``fastapi-offline`` package (it ships the built swagger-ui and ReDoc files), served by this
process under :data:`STATIC_URL`, so the pages work without network access and load nothing
from another origin. Each page's inline script runs only with the nonce of its response.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

#: Where the swagger-ui and ReDoc files are served.
STATIC_URL = "/static/docs"
#: The built swagger-ui (bundle, CSS) and ReDoc (standalone) files shipped by fastapi-offline.
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL = "/docs", "/redoc", "/docs/oauth2-redirect"


def docs_csp(nonce: str) -> str:
    """The CSP of the docs pages: scripts, styles, fonts and fetches from this origin only
    (inline styles allowed: both UIs set them at run time), inline scripts only with ``nonce``,
    ReDoc's web worker from a ``blob:``, no framing."""
    return (
        f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def _with_nonce(page: HTMLResponse) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
    return HTMLResponse(html, headers={"Content-Security-Policy": docs_csp(nonce), "Cache-Control": "no-store"})


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and the static files to ``app``
    (created with ``docs_url=None, redoc_url=None``). Like FastAPI's own docs routes they are
    plain routes, public and outside the OpenAPI document."""
    app.mount(STATIC_URL, StaticFiles(directory=ASSETS_DIR), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_nonce(get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{title} - Swagger UI", oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js", swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png", swagger_ui_parameters=app.swagger_ui_parameters,
        ))

    async def oauth2_redirect(_request: Request) -> HTMLResponse:
        return _with_nonce(get_swagger_ui_oauth2_redirect_html())

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_nonce(get_redoc_html(
            openapi_url=root + openapi_url, title=f"{title} - ReDoc", redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png", with_google_fonts=False,
        ))

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
