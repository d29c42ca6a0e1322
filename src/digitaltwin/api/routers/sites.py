"""Sites: places with one local calendar."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from digitaltwin.api.deps import State
from digitaltwin.api.schemas import SiteIn, SiteOut, SitePatch
from digitaltwin.domain.assets import Site, check_country, check_site_attributes, check_slug
from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.timestamps import zone
from digitaltwin.observability.changes import changes, record_change
from digitaltwin.security.audit import AuditEvent

router = APIRouter(prefix="/api/v1/sites", tags=["sites"])


def _out(site: Site) -> SiteOut:
    return SiteOut(id=site.id, name=site.name, timezone=site.timezone, country=site.country, attributes=site.attributes)


def _check_attributes(state: State, attributes: dict[str, object]) -> dict[str, object]:
    """:func:`check_site_attributes`, and the carbon intensity asset must exist (404 naming the key)."""
    checked = check_site_attributes(attributes)
    intensity_asset = checked.get("carbon_intensity_asset_id")
    if isinstance(intensity_asset, str):
        state.repo.get_asset(intensity_asset, field="carbon_intensity_asset_id")
    return checked


@router.get("", response_model=list[SiteOut])
def list_sites(state: State) -> list[SiteOut]:
    """All sites."""
    return [_out(s) for s in state.repo.list_sites()]


@router.post("", response_model=SiteOut, status_code=status.HTTP_201_CREATED)
def create_site(body: SiteIn, state: State) -> SiteOut:
    """Register a site; 409 if the id exists, 422 naming ``timezone`` for an unknown IANA zone or
    ``country`` for a code the ``holidays`` package does not know, or the attribute key at fault
    (e.g. ``co2_factor_g_per_kwh``); 404 naming ``carbon_intensity_asset_id`` for an unknown asset."""
    check_slug(body.id, field="id")
    zone(body.timezone)
    country = check_country(body.country)
    attributes = _check_attributes(state, body.attributes)
    return _out(state.repo.create_site(Site(body.id, body.name, body.timezone, country, attributes)))


@router.get("/{site_id}", response_model=SiteOut)
def get_site(site_id: str, state: State) -> SiteOut:
    """One site; 404 if unknown."""
    return _out(state.repo.get_site(site_id))


@router.patch("/{site_id}", response_model=SiteOut)
def update_site(site_id: str, body: SitePatch, state: State, request: Request) -> SiteOut:
    """Change a site's name, timezone, country or attributes (admin); 404 if unknown, 422 naming the bad field.

    Readings are stored in UTC, so a corrected timezone applies to every later energy
    query at once: nothing stored is rewritten. The change is written to the audit log
    (``site_updated``, each changed field from and to).
    """
    site = state.repo.get_site(site_id)
    sent = body.model_fields_set
    if "name" in sent and body.name is None:
        raise ValidationError("name cannot be null", field="name")
    if "timezone" in sent:
        if body.timezone is None:
            raise ValidationError("timezone cannot be null", field="timezone")
        zone(body.timezone)
    changed = Site(
        site.id,
        body.name if "name" in sent else site.name,
        body.timezone if "timezone" in sent else site.timezone,
        check_country(body.country) if "country" in sent else site.country,
        _check_attributes(state, body.attributes or {}) if "attributes" in sent else site.attributes,
    )
    updated = state.repo.update_site(changed)
    diff = changes(_fields(site), _fields(updated))
    if diff:
        record_change(request, AuditEvent.SITE_UPDATED, subject=site_id, changes=diff)
    return _out(updated)


def _fields(site: Site) -> dict[str, object]:
    return {"name": site.name, "timezone": site.timezone, "country": site.country, "attributes": site.attributes}
