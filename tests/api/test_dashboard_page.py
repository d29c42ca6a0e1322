"""The dashboard's page: public, under its content security policy, and answering HEAD for uptime probes."""

from __future__ import annotations

from .conftest import ClientAs


def test_the_page_answers_get_and_head_without_a_login(anonymous_client: ClientAs) -> None:
    page = anonymous_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self';" in page.headers["content-security-policy"]
    head = anonymous_client.request("HEAD", "/")
    assert head.status_code == 200 and head.content == b""
    assert anonymous_client.request("HEAD", "/api/v1/sites").status_code in (401, 405)  # the API still needs a login
