"""schemathesis against ``/api/v1/openapi.json``, through WSGI, with a real workspace key (and the
admin token on the admin routes): for every operation, requests that fit the schema and requests
that do not; the answer is never a 5xx (but the 502 that reports the Graph API's refusal) and
every error is JSON. ``COEXHUB_FUZZ_EXAMPLES`` bounds
the examples per operation and mode (default small, to keep the suite fast)."""
from __future__ import annotations

import json
import os

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

EXAMPLES = max(1, int(os.environ.get("COEXHUB_FUZZ_EXAMPLES", "20")) // 5)  # per operation and mode
ADMIN_PATHS = ("/api/v1/workspaces",)
UPSTREAM_CODES = ("onboarding_failed", "graph_error")  # the Graph API (here the simulator) refused: a 502 by design


def test_no_generated_request_is_a_server_error(app, client, coexistence):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    problems: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not an empty schema

    for operation in operations:  # every operation gets its examples
        headers = client.admin_headers if operation.path in ADMIN_PATHS else coexistence.workspace.headers
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(mode))
            def call(case):
                response = case.call(headers=headers)  # noqa: B023 -- called right below, in this iteration
                upstream = response.status_code == 502 and \
                    _json(response.text).get("error", {}).get("code") in UPSTREAM_CODES
                if response.status_code >= 500 and not upstream:
                    problems.append(f"{case.method} {case.formatted_path} query={case.query} "
                                    f"body={case.body!r:.300} → {response.status_code} {response.text[:300]}")
                elif response.status_code >= 400 and "error" not in _json(response.text):
                    problems.append(f"{case.method} {case.formatted_path} → {response.status_code} is not a "
                                    f"JSON error: {response.text[:200]}")

            call()
    assert not problems, "\n".join(sorted(set(problems)))


def _json(text: str) -> dict:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
