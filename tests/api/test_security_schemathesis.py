"""Schemathesis over the app's OpenAPI document with an admin token: no input may cause a 5xx.

Every operation of ``/openapi.json`` (so routes added later too) gets :data:`EXAMPLES`
generated cases, derandomised so that CI runs are repeatable. Each case carries a fresh
admin session, so a generated logout or password change cannot starve the cases after it.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import ClientAs, security_of

#: Generated cases per operation: bounds the run (about a minute per backend on 2 cores).
EXAMPLES = 10


def _transport(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k in ("params", "headers", "json", "data", "cookies")}
    if isinstance(out.get("data"), (bytes, str)):
        out["content"] = out.pop("data")
    out.pop("cookies", None)
    return out


@pytest.mark.slow
def test_no_server_errors_for_generated_requests(client: TestClient) -> None:
    security = security_of(client)
    admin = security.store.get_user_by_name("admin")
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    failures: list[str] = []
    operations = cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            nonlocal cases
            cases += 1
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            pair = security.sessions.start(admin, amr="pwd")  # type: ignore[arg-type]
            headers = {**(kwargs.get("headers") or {}), "Authorization": f"Bearer {pair.access_token}"}
            transport = _transport({**kwargs, "headers": headers})
            try:
                response = ClientAs(client, None).request(kwargs["method"], kwargs["url"].removeprefix("http://testserver"), **transport)
            except Exception as exc:  # noqa: BLE001 - the TestClient re-raises what would be a 500
                failures.append(f"{case.method} {case.formatted_path}: 500 {type(exc).__name__}: {exc}\n  {case.as_curl_command()}")
                return
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}\n  {case.as_curl_command()}")

        run()
    print(f"schemathesis: {operations} operations, {cases} cases, {len(failures)} server errors")
    assert operations >= 20
    assert not failures, "\n".join(failures[:20])
