"""Serve the dashboard: ``/`` is its page, ``/ui/...`` its scripts, styles and the vendored chart library.

Everything ships inside the package (no CDN, no network): the page is plain HTML, its code
native ES modules, its charts Apache ECharts (``static/vendor``, Apache-2.0). The page holds
its tokens in memory only and talks to the same ``/api/v1`` routes as any script, so there
is no second authentication system; a reload asks for the login again.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from digitaltwin.security.policy import PUBLIC, access

STATIC_DIR = Path(str(files("digitaltwin.web") / "static"))
#: The page's policy: its own scripts only (no inline script), styles inline too (chart tooltips
#: are styled elements), images from itself and data: URLs, API calls to its own origin.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, openapi_extra=access(PUBLIC))  # HEAD: uptime probes
def dashboard() -> HTMLResponse:
    """The dashboard's single page (its views are chosen by the URL fragment)."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Content-Security-Policy": DASHBOARD_CSP, "Cache-Control": "no-cache"})


def mount_dashboard(app: FastAPI) -> None:
    """Add the page and its static files to ``app``."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC_DIR), name="ui")
