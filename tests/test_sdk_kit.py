"""The test kit and the contract's edges: run_scheduler stays in its workspace, an installed plugin
named again in coexhub_extra_plugins loads once, config schemas keep list element types."""
import datetime as dt
import secrets

from marshmallow import Schema, fields, validate

import connectors.shopify
from hub.connector import CancelScheduled, ScheduleSend, config_json_schema, secret
from hub.core.models import Connection
from hub.core.plugins.manager import Plugins
from tests.test_sdk_schedule import execute


def test_run_scheduler_only_moves_this_workspaces_sends(client, coexistence, run_scheduler, sends):
    other = client.new_workspace("Other shop")
    with client.rt.db.session() as s:
        s.add(Connection(workspace_id=other.id, waba_id="1029384756", phone_number_id=secrets.token_hex(6),
                         display_phone_number="15550002222", access_token="EAAG-test-token"))
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    reminder = ScheduleSend(to="14155550106", template="order_update", params=["1"], at=at, cancel_key="r")
    execute(client, other, reminder)
    execute(client, coexistence.workspace, reminder)
    try:
        assert run_scheduler(now=at + dt.timedelta(minutes=1)) == 1
        assert len(sends(status="sent")) == 1
        from hub.testing import sends as sends_of

        assert [s.status for s in sends_of(client.rt, other.id)] == ["scheduled"]
    finally:
        execute(client, other, CancelScheduled(cancel_key="r"))


def test_an_installed_plugin_named_again_is_registered_once():
    plugins = Plugins(extra=[connectors.shopify, connectors.shopify])
    assert plugins.connectors["shopify"] is connectors.shopify.Shopify
    assert [p for p in plugins.pm.get_plugins() if p is connectors.shopify] == [connectors.shopify]


class Nested(Schema):
    hours = fields.Integer(required=True)


class ListsConfig(Schema):
    api_key = secret(fields.String(required=True))
    reminder_hours = fields.List(fields.Integer(validate=validate.Range(1, 168)), load_default=[24, 1],
                                 validate=validate.Length(min=1, max=5))
    emails = fields.List(fields.Email())
    labels = fields.Dict(keys=fields.String(), values=fields.String())
    mode = fields.String(validate=validate.OneOf(["live", "test"]), load_default="live")
    steps = fields.List(fields.Nested(Nested))
    tokens = secret(fields.List(fields.String()))


def test_config_json_schema_keeps_element_types():
    props = config_json_schema(ListsConfig)["properties"]
    assert props["reminder_hours"] == {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 168},
                                       "minItems": 1, "maxItems": 5, "default": [24, 1]}
    assert props["emails"] == {"type": "array", "items": {"type": "string", "format": "email"}}
    assert props["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert props["mode"] == {"type": "string", "enum": ["live", "test"], "default": "live"}
    assert props["steps"]["items"] == {"type": "object", "properties": {"hours": {"type": "integer"}},
                                       "required": ["hours"]}
    assert props["tokens"] == {"type": "array", "items": {"type": "string"}, "writeOnly": True, "x-secret": True}


def test_the_conformance_check_knows_at_and_group():
    from hub.testing.conformance import check_action

    good = ScheduleSend(to="14155552671", template="t", at=dt.datetime.now(dt.timezone.utc), group="g", cancel_key="k")
    assert check_action(good) == []
    bad = ScheduleSend(to="14155552671", template="t", at="tomorrow", group="")
    assert check_action(bad) == ["ScheduleSend.at='tomorrow' is not a datetime",
                                 "ScheduleSend.group='' is not a non-empty string"]
