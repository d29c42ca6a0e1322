"""Authentication and authorisation of every route, applied once for the whole app.

:func:`authorize` is an app-wide dependency (``FastAPI(dependencies=...)``), so every route,
including routes added later by any router, is checked against
:func:`digitaltwin.security.policy.requirement`. :func:`annotate_openapi` writes the same
requirement into each operation of the OpenAPI document (``x-required-role``,
``x-api-key-scope``) with its 401/403 answers, which the role x route test reads.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from digitaltwin.security.errors import AuthenticationError, PermissionDeniedError
from digitaltwin.security.middleware import CLIENT_IP_KEY
from digitaltwin.security.policy import MFA_ENROLMENT_KEY, PUBLIC, ROLE_KEY, SCOPE_KEY, Requirement, requirement
from digitaltwin.security.principal import Principal
from digitaltwin.security.principal_cache import EPOCH_STATE_KEY
from digitaltwin.security.service import SecurityService

TOKEN_URL = "/api/v1/auth/token"
#: The two ways to authenticate, as the OpenAPI document states them (see :func:`annotate_openapi`).
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False, scheme_name="bearer")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey")
SECURITY_SCHEMES = {
    scheme.scheme_name: scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
    for scheme in (oauth2_scheme, api_key_scheme)
}


def route_template(route: APIRoute, path: str, path_params: dict[str, Any]) -> str:
    """The full path template of a matched route, as in the OpenAPI document.

    ``route.path_format`` lacks a prefix given to ``include_router(prefix=...)``; that prefix
    is recovered from the request path, which ends with the route's own part.
    """
    try:
        own = route.path_format.format(**{k: str(v) for k, v in path_params.items()})
    except (KeyError, IndexError, ValueError):
        return route.path_format
    if path.endswith(own) and len(path) > len(own):
        return path[: len(path) - len(own)] + route.path_format
    return route.path_format


def route_requirement(route: object, method: str, *, path: str | None = None, path_params: dict[str, Any] | None = None) -> Requirement:
    """The requirement of a matched route (public for anything that is not an API route)."""
    if not isinstance(route, APIRoute):
        return Requirement(None)
    template = route.path_format if path is None else route_template(route, path, path_params or {})
    return requirement(template, method, route.openapi_extra)


def client_ip(request: Request) -> str | None:
    """The client address resolved by the rate-limit middleware (trusted-proxy aware)."""
    return request.scope.get("state", {}).get(CLIENT_IP_KEY) or (request.client.host if request.client else None)


async def get_security_dependency(request: Request) -> SecurityService:
    """:func:`get_security` as a dependency (``async``: a plain ``def`` dependency costs a thread hop)."""
    return get_security(request)


def get_security(request: Request) -> SecurityService:
    return request.app.state.dt.security


def enforce(req: Requirement, principal: Principal) -> None:
    """Raise PermissionDeniedError unless ``principal`` meets ``req``."""
    assert req.role is not None
    if principal.kind == "api_key":
        if req.scope is None or req.scope not in principal.scopes:
            needed = f"scope {req.scope!r}" if req.scope else "a user login"
            raise PermissionDeniedError(f"this API key may not call this route; it needs {needed}", field="X-API-Key")
        return
    assert principal.role is not None
    if principal.mfa_missing and not req.mfa_enrolment:
        raise PermissionDeniedError(
            f"role {principal.role.value} requires multi-factor authentication: enrol at POST /api/v1/auth/mfa/enroll "
            "and confirm, or log in with your code",
            field="mfa",
        )
    if not principal.role.allows(req.role):
        raise PermissionDeniedError(f"role {principal.role.value} may not call this route; it needs {req.role.value}", field="role")


def credentials(request: Request) -> tuple[str | None, str | None]:
    """(bearer token, API key) of a request, as the ``bearer`` and ``apiKey`` schemes of the
    OpenAPI document read them: the token of an ``Authorization: Bearer`` header (any other
    scheme counts as none) and a non-empty ``X-API-Key`` header."""
    authorization = request.headers.get("authorization")
    bearer = None
    if authorization:
        scheme, _, param = authorization.partition(" ")
        if scheme.lower() == "bearer":
            bearer = param
    return bearer, request.headers.get("x-api-key") or None


async def authorize(request: Request) -> Principal | None:
    """App-wide dependency: authenticate the caller and check the route's requirement.

    Sets ``request.state.principal`` (None on public routes). Public routes are decided on the
    event loop. A bearer token whose session this process has cached, checked against the
    security epoch that the rate limiter read along with its count
    (:data:`~digitaltwin.security.principal_cache.EPOCH_STATE_KEY`), is answered on the event
    loop too; anything that may read storage runs in the thread pool.

    The credentials are read here rather than through FastAPI's ``OAuth2PasswordBearer`` and
    ``APIKeyHeader`` dependencies: resolving those two sub-dependencies on every request cost
    more than the rest of the check. :func:`annotate_openapi` states the same two schemes in
    the OpenAPI document.

    Raises:
        AuthenticationError: 401 naming ``Authorization`` or ``X-API-Key``.
        PermissionDeniedError: 403 naming ``role``, ``mfa`` or ``X-API-Key``.
    """
    # the scope's path, not request.url.path: that builds a whole URL (host header, escaping) on every request
    req = route_requirement(request.scope.get("route"), request.method, path=request.scope["path"], path_params=request.path_params)
    request.state.principal = None
    if req.public:
        return None
    bearer, api_key = credentials(request)
    security = get_security(request)
    epoch = request.scope.get("state", {}).get(EPOCH_STATE_KEY)
    principal = security.cached_principal(bearer=bearer, api_key=api_key, epoch=epoch)
    if principal is None:
        principal = await run_in_threadpool(security.authenticate, bearer=bearer, api_key=api_key, epoch=epoch)
    enforce(req, principal)
    request.state.principal = principal
    return principal


async def current_principal_dependency(request: Request) -> Principal:
    """:func:`current_principal` as a dependency (``async``: a plain ``def`` dependency costs a thread hop)."""
    return current_principal(request)


async def current_user_dependency(request: Request) -> Principal:
    """:func:`current_user` as a dependency (``async``: a plain ``def`` dependency costs a thread hop)."""
    return current_user(request)


def current_principal(request: Request) -> Principal:
    """The caller checked by :func:`authorize`."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise AuthenticationError("not authenticated")
    return principal


def current_user(request: Request) -> Principal:
    """The calling *user* (routes about one's own account refuse API keys)."""
    principal = current_principal(request)
    if principal.kind != "user":
        raise PermissionDeniedError("this route needs a user login, not an API key", field="X-API-Key")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal_dependency)]
CurrentUser = Annotated[Principal, Depends(current_user_dependency)]
Security = Annotated[SecurityService, Depends(get_security_dependency)]

_METHODS = frozenset({"get", "head", "options", "post", "put", "patch", "delete"})
_POLICY_KEYS = (ROLE_KEY, SCOPE_KEY, MFA_ENROLMENT_KEY)
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "field": {"type": ["string", "null"]}},
    "required": ["detail"],
}


def annotate_openapi(app: FastAPI, *, extra_paths: dict[str, dict[str, Any]] | None = None) -> None:
    """Make ``app.openapi()`` state each operation's access (and drop security from public ones).

    Every operation that is not public accepts either scheme of :data:`SECURITY_SCHEMES`;
    ``extra_paths`` are path items of routes served outside FastAPI's routing (``/healthz``).
    """
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = default_openapi()  # cached by FastAPI; annotating again is idempotent
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        missing = {path: item for path, item in (extra_paths or {}).items() if path not in schema.get("paths", {})}
        if missing:
            schema["paths"] = {**missing, **schema.get("paths", {})}
        paths = schema.setdefault("paths", {})
        for path, item in paths.items():
            for method, operation in item.items():
                if method not in _METHODS or not isinstance(operation, dict):
                    continue
                # The operation holds the route's openapi_extra, so this is the check authorize() makes.
                req = requirement(path, method, {k: operation[k] for k in _POLICY_KEYS if k in operation})
                operation[ROLE_KEY] = PUBLIC if req.public else req.role.value  # type: ignore[union-attr]
                operation[SCOPE_KEY] = req.scope
                responses = operation.setdefault("responses", {})
                error = {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}
                responses.setdefault("429", {"description": "rate limit exceeded (Retry-After)", **error})
                if req.public:
                    operation["security"] = []
                else:
                    operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
                    responses.setdefault("401", {"description": "not authenticated", **error})
                    responses.setdefault("403", {"description": f"needs role {req.role.value}", **error})  # type: ignore[union-attr]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
