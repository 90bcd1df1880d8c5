"""A complete third-party coexhub plugin in one file.

Install it with ``pip install ./examples/coexhub-hello`` and the hub lists a ``hello``
connector: no change to the hub, the ``coexhub`` entry point is all it takes.
"""
from marshmallow import Schema, fields

from hub.connector import Connector, JsonField, SendTemplate, SharedToken, hookimpl, on_webhook, secret


class HelloConfig(Schema):
    token = secret(fields.String(required=True, metadata={"description": "shared token the sender puts in X-Hello-Token"}))
    template = fields.String(load_default="hello_world")


class Hello(Connector):
    name = "hello"
    title = "Hello (example plugin)"
    config_schema = HelloConfig
    verify = SharedToken(key="token", header="X-Hello-Token")
    event_id = JsonField("id")
    topic = JsonField("type")

    @on_webhook("greet")
    def greet(self, payload, ctx):
        to = ctx.phone(payload, "phone")
        return [SendTemplate(to=to, template=ctx.config["template"], language="en_US")] if to else []


@hookimpl
def coexhub_connectors():
    return [Hello]
