"""The files ``coexhub new-connector NAME`` writes (``string.Template``: ``$name``, ``$module``,
``$cls``, ``$header``, ``$title``). The generated package passes its own tests as written; a test
in coexhub's suite generates it and runs them."""

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "coexhub-$name"
version = "0.1.0"
description = "$title connector for coexhub"
requires-python = ">=3.11"
dependencies = ["coexhub"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.coexhub]
# the hub loads every module registered here; the name is the plugin's name
$name = "$module"

[tool.setuptools]
packages = ["$module"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

CONNECTOR = '''"""$title connector for coexhub.

Webhooks arrive at ``POST /webhooks/$name/<installation_id>``, signed with HMAC-SHA256 of the
body (hex, ``sha256=`` prefix) in ``X-$header-Signature``; the delivery id is in
``X-$header-Delivery`` and the event type in ``X-$header-Topic``. Adapt these declarations to your
provider: the reference is docs/sdk.md in coexhub.
"""
import datetime as dt

from marshmallow import Schema, fields, validate

from hub.connector import (CancelScheduled, Connector, Header, HmacHeader, ScheduleSend, SendTemplate, Skip,
                           dig, hookimpl, on_webhook, secret)


class ${cls}Config(Schema):
    webhook_secret = secret(fields.String(required=True, metadata={"description": "signs the webhooks"}))
    default_country = fields.String(load_default="US", metadata={"description": "for national phone numbers"})
    language = fields.String(load_default="en_US")
    confirmation_template = fields.String(load_default="order_confirmation",
                                          metadata={"description": "utility template, 2 body parameters"})
    followup_template = fields.String(load_default=None, metadata={"description": "empty: no follow-up"})
    followup_hours = fields.Integer(load_default=24, validate=validate.Range(1, 24 * 30))


class $cls(Connector):
    name = "$name"
    title = "$title"
    config_schema = ${cls}Config
    verify = HmacHeader("X-$header-Signature", key="webhook_secret", prefix="sha256=")
    event_id = Header("X-$header-Delivery")
    topic = Header("X-$header-Topic")

    @on_webhook("order.created")
    def order_created(self, payload, ctx):
        order_id = str(dig(payload, "id") or "")
        to = ctx.phone(payload, "customer.phone", "phone")
        if not order_id or not to:
            return [Skip(f"order without id or phone ({', '.join(ctx.notes) or 'no id'})")]
        name = str(dig(payload, "customer.first_name") or "there")
        params, group = [name, str(dig(payload, "number") or order_id)], f"$name:{ctx.installation_id}:{order_id}"
        actions = [SendTemplate(to=to, template=ctx.config["confirmation_template"], params=params,
                                language=ctx.config["language"], idempotency_key=f"{group}:confirmation",
                                reference={"order_id": order_id})]
        if ctx.config.get("followup_template"):
            actions.append(ScheduleSend(to=to, template=ctx.config["followup_template"], params=[name],
                                        language=ctx.config["language"],
                                        after=dt.timedelta(hours=ctx.config["followup_hours"]),
                                        cancel_key=f"{group}:followup", group=group))
        return actions

    @on_webhook("order.cancelled")
    def order_cancelled(self, payload, ctx):
        order_id = str(dig(payload, "id") or "")
        if not order_id:
            return [Skip("order without id")]
        return [CancelScheduled(group=f"$name:{ctx.installation_id}:{order_id}")]


@hookimpl
def coexhub_connectors():
    return [$cls]
'''

CONFTEST = '''import pytest

import $module


@pytest.fixture(scope="session")
def coexhub_extra_plugins():
    """Register the plugin for the tests, installed or not (it is never registered twice)."""
    return [$module]
'''

TESTS = '''"""$title connector: the conformance suite and its flows, through the hub's real webhook route,
against the Graph API simulator (fixtures from coexhub's test kit)."""
import datetime as dt

from hub.testing.conformance import ConnectorConformance

SECRETS = {"webhook_secret": "$name-test-secret"}
ORDER = {"id": 1001, "number": "#1001", "phone": "+1 415 555 2671", "customer": {"first_name": "Ada"}}


class Test${cls}Conformance(ConnectorConformance):
    connector = "$name"
    config = {"webhook_secret": "$name-conformance-secret"}
    sample = ORDER
    topic_headers = {"X-$header-Topic": "order.created"}
    event_id_header = "X-$header-Delivery"


def deliver(client, inst, topic, payload, delivery):
    response = client.deliver("$name", inst["id"], payload, SECRETS,
                              headers={"X-$header-Topic": topic, "X-$header-Delivery": delivery})
    assert response.status_code == 200, response.json
    return response


def test_an_order_sends_the_confirmation_once(client, coexistence, run_jobs, sends):
    coexistence.add_template("order_confirmation", body_params=2)
    inst = client.install(coexistence.workspace, "$name", {**SECRETS})
    deliver(client, inst, "order.created", ORDER, "d1")
    deliver(client, inst, "order.created", ORDER, "d1")  # a redelivery
    run_jobs()
    [send] = sends(status="sent")
    assert send.to == "14155552671" and send.params == ["Ada", "#1001"]
    assert len(coexistence.sent("order_confirmation")) == 1


def test_the_followup_comes_due_and_a_cancellation_stops_it(
        client, coexistence, run_jobs, run_scheduler, sends):
    coexistence.add_template("order_confirmation", body_params=2)
    coexistence.add_template("order_followup", body_params=1)
    inst = client.install(coexistence.workspace, "$name", {**SECRETS, "followup_template": "order_followup"})
    deliver(client, inst, "order.created", ORDER, "d2")
    deliver(client, inst, "order.created", {**ORDER, "id": 1002}, "d3")
    run_jobs()
    assert len(sends(status="scheduled", template_name="order_followup")) == 2
    deliver(client, inst, "order.cancelled", {"id": 1002}, "d4")
    run_jobs()
    assert run_scheduler(now=dt.timedelta(hours=23)) == 0  # not yet
    assert run_scheduler(now=dt.timedelta(hours=25)) == 1  # the cancelled order's is not sent
    assert [s.reference for s in sends(status="cancelled")] == [{}]
    assert len(coexistence.sent("order_followup")) == 1


def test_an_order_without_phone_is_skipped(client, coexistence, run_jobs, sends):
    inst = client.install(coexistence.workspace, "$name", {**SECRETS})
    deliver(client, inst, "order.created", {"id": 1003}, "d5")
    run_jobs()
    assert sends() == []
    events = client.get("/api/v1/events", headers=coexistence.workspace.headers).json
    assert any("no phone number" in str(e.get("outcome")) for e in events)
'''

README = '''# coexhub-$name

A [coexhub](https://github.com/) connector for $title: `order.created` sends an order
confirmation (and, when `followup_template` is set, a follow-up `followup_hours` later);
`order.cancelled` cancels that follow-up.

```sh
pip install -e '.[test]'   # next to coexhub; the `coexhub` entry point registers the plugin
coexhub connectors          # lists "$name" with its topics and config fields
pytest                      # the conformance suite and the flows, on SQLite + embedded Redis
```

Webhooks: `POST /webhooks/$name/<installation_id>` with `X-$header-Signature: sha256=<hex HMAC of
the body with webhook_secret>`, `X-$header-Delivery` (dedupe key) and `X-$header-Topic`.
Adapt the declarations in `$module/__init__.py` to your provider; the connector API is
documented in coexhub's `docs/sdk.md`, the test kit in `docs/plugins.md`.
'''

FILES = {
    "pyproject.toml": PYPROJECT,
    "$module/__init__.py": CONNECTOR,
    "tests/conftest.py": CONFTEST,
    "tests/test_$module.py": TESTS,
    "README.md": README,
}
