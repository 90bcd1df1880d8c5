"""A generic conformance suite every connector should pass.

Subclass :class:`ConnectorConformance` in a test module, name the subclass ``Test…`` so pytest
collects it, and declare the connector, a valid install config and a payload it accepts::

    from hub.testing.conformance import ConnectorConformance

    class TestShopConformance(ConnectorConformance):
        connector = "shop"
        config = {"shop": "x.example", "webhook_secret": "shop-conformance-secret"}
        sample = {"id": 1, "phone": "+1 415 555 2671"}
        topic_headers = {"X-Shop-Topic": "orders/create", "X-Shop-Webhook-Id": "1"}
        event_id_header = "X-Shop-Webhook-Id"

The checks run through the real webhook route and API (the ``client``/``workspace``/``run_jobs``
fixtures of ``hub.testing.plugin``): a bad or missing signature is 401 and stores nothing, a
redelivery is stored once, secret config values are never returned by the API and are
encrypted at rest, the config schema is a usable JSON Schema, every declared handler returns
valid actions for the sample, for ``{}`` and for a payload of nulls without raising, and an
unknown installation is 404.
"""
from __future__ import annotations

import datetime as dt
import importlib
import json
import secrets as _secrets
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode

import pytest
from sqlalchemy import select, text

from hub.core.actions import (
    ACTION_TYPES,
    CancelScheduled,
    DisableInstallation,
    Emit,
    RecordRevenue,
    PaymentReceived,
    SendPaymentLink,
    SendTemplate,
    SendText,
    Skip,
    UpsertContact,
    WriteBack,
)
from hub.core.connectors import Connector, Context
from hub.core.verifiers import NoVerification, SharedToken
from hub.testing import sign

__all__ = ["ConnectorConformance", "check_action", "nulled"]

UNKNOWN_TOPIC = "coexhub.conformance/unknown-topic"


def nulled(value: Any) -> Any:
    """``value`` with every scalar leaf replaced by ``None`` (dict keys and list lengths kept)."""
    if isinstance(value, dict):
        return {k: nulled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nulled(v) for v in value]
    return None


def _digits(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit() and 7 <= len(value) <= 15


def _json_ready(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def check_action(action: Any) -> list[str]:
    """What is wrong with one returned action (an empty list when it is valid)."""
    if not isinstance(action, ACTION_TYPES):
        return [f"{action!r} is not an action (hub.core.actions.ACTION_TYPES)"]
    problems = []
    if isinstance(action, (SendTemplate, SendText, RecordRevenue)) and not _digits(action.to):
        problems.append(f"{type(action).__name__}.to={action.to!r} is not WhatsApp digits (E.164 without +)")
    if isinstance(action, SendTemplate):
        if not (isinstance(action.template, str) and action.template):
            problems.append(f"SendTemplate.template={action.template!r} is not a template name")
        if not _json_ready(action.params) or not _json_ready(action.reference):
            problems.append("SendTemplate params/reference are not JSON-serializable")
        after = getattr(action, "after", 0)
        if not isinstance(after, (int, dt.timedelta)) or isinstance(after, bool):
            problems.append(f"ScheduleSend.after={after!r} is neither seconds nor a timedelta")
        at = getattr(action, "at", None)
        if at is not None and not isinstance(at, dt.datetime):
            problems.append(f"ScheduleSend.at={at!r} is not a datetime")
        for name in ("cancel_key", "group"):
            value = getattr(action, name, None)
            if value is not None and not (isinstance(value, str) and value):
                problems.append(f"ScheduleSend.{name}={value!r} is not a non-empty string")
    if isinstance(action, SendText) and not (isinstance(action.text, str) and action.text):
        problems.append("SendText.text is empty")
    if isinstance(action, CancelScheduled) and not any(isinstance(v, str) and v for v in (action.cancel_key,
                                                                                       action.group)):
        problems.append(f"CancelScheduled has neither a cancel_key nor a group ({action!r})")
    if isinstance(action, UpsertContact) and not _digits(action.wa_id):
        problems.append(f"UpsertContact.wa_id={action.wa_id!r} is not WhatsApp digits")
    if isinstance(action, Emit) and (not isinstance(action.event, str) or not _json_ready(action.data)):
        problems.append(f"Emit({action.event!r}) has no event name or data that is not JSON-serializable")
    if isinstance(action, (Skip, DisableInstallation)) and not isinstance(action.reason, str):
        problems.append(f"{type(action).__name__}.reason={action.reason!r} is not a string")
    if isinstance(action, RecordRevenue) and not (isinstance(action.amount, str) and isinstance(action.currency, str)):
        problems.append("RecordRevenue amount/currency must be strings")
    if isinstance(action, SendPaymentLink):
        problems += _payment_link_problems(action)
    if isinstance(action, PaymentReceived) and not all(
            isinstance(v, str) and v for v in (action.reference, action.amount, action.currency, action.payment_id)):
        problems.append("PaymentReceived reference/amount/currency/payment_id must be non-empty strings")
    if isinstance(action, WriteBack):
        module, _, name = action.target.partition(":")
        try:  # resolved by name in the writeback job, so it must be importable (no closures, no lambdas)
            func = importlib.import_module(module)
            for part in name.split("."):
                func = getattr(func, part)
            assert callable(func)
        except Exception as exc:
            problems.append(f"WriteBack target {action.target!r} cannot be resolved by name: {exc!r}")
        if not _json_ready(action.kwargs):
            problems.append(f"WriteBack kwargs {action.kwargs!r} are not JSON-serializable")
    return problems


def _payment_link_problems(action: Any) -> list[str]:
    from decimal import Decimal, InvalidOperation

    problems = []
    try:
        if not Decimal(str(action.amount)) > 0:
            problems.append(f"SendPaymentLink.amount={action.amount!r} is not positive")
    except (InvalidOperation, ValueError):
        problems.append(f"SendPaymentLink.amount={action.amount!r} is not a decimal string")
    if not (isinstance(action.currency, str) and len(action.currency) == 3):
        problems.append(f"SendPaymentLink.currency={action.currency!r} is not a 3-letter code")
    if not (isinstance(action.payment_reference, str) and action.payment_reference):
        problems.append("SendPaymentLink.payment_reference is empty (the paid link is routed back by it)")
    return problems


class ConnectorConformance:
    """Base class of a connector's conformance tests (subclass it as ``Test…``)."""

    connector: ClassVar[str]
    #: a valid install config, secrets included (secret values should be distinctive strings)
    config: ClassVar[dict[str, Any]]
    #: a payload the connector accepts (a dict/list, sent as JSON or form-encoded per ``body_format``; or bytes)
    sample: ClassVar[Any]
    #: headers of a real delivery: topic, event id… (the ``event_id_header`` value is replaced per test)
    topic_headers: ClassVar[dict[str, str]] = {}
    #: the header carrying the provider's delivery id, when that is the dedupe key
    event_id_header: ClassVar[str | None] = None
    #: optional per-topic payloads for the handler check (``sample`` is used for the other topics)
    samples: ClassVar[dict[str, Any]] = {}
    #: left out of the handler check, with the reason: a topic (all payloads), or ``(topic, payload)``
    #: where payload is one of "sample", "{}", "nulls", "top-level nulls"
    handler_exemptions: ClassVar[dict[Any, str]] = {}

    # -- helpers --------------------------------------------------------------------------------
    def connector_cls(self, client_or_runtime) -> type[Connector]:
        rt = getattr(client_or_runtime, "rt", client_or_runtime)
        cls = rt.plugins.connectors.get(self.connector)
        assert cls is not None, f"no connector named {self.connector!r} is registered"
        return cls

    def secret_values(self, cls: type[Connector]) -> dict[str, str]:
        return {k: str(self.config[k]) for k in sorted(cls().secret_fields())
                if self.config.get(k) not in (None, "")}

    def encode(self, cls: type[Connector], payload: Any) -> bytes:
        if isinstance(payload, bytes):
            return payload
        if cls.body_format == "form":
            return urlencode(payload, doseq=True).encode()
        return json.dumps(payload).encode()

    def headers(self, event_id: str | None = None) -> dict[str, str]:
        headers = dict(self.topic_headers)
        if self.event_id_header:
            headers[self.event_id_header] = event_id or f"conformance-{_secrets.token_hex(8)}"
        return headers

    def post(self, client, installation_id: str, body: bytes, headers: Mapping[str, str],
             secrets: Mapping[str, Any] | None, signed_body: bytes | None = None):
        """POST ``body`` to the webhook URL, signed with ``secrets`` (unsigned when None).

        ``signed_body``: sign these bytes instead of ``body`` (a body changed after signing).
        """
        cls = self.connector_cls(client)
        content_type = "application/x-www-form-urlencoded" if cls.body_format == "form" else "application/json"
        url, signed = f"/webhooks/{self.connector}/{installation_id}", {}
        if secrets is not None:
            signed = sign(cls, body if signed_body is None else signed_body, dict(secrets))
            verifier = cls.verify
            if isinstance(verifier, SharedToken) and not verifier.header:  # a token in the query string
                url += "?" + urlencode({verifier.query or "token": secrets.get(verifier.key, "")})
        return client.post(url, data=body, headers={"Content-Type": content_type, **headers, **signed})

    def install(self, client, workspace) -> tuple[dict, dict[str, Any]]:
        """Install the connector with ``config``; returns the API's answer and the secrets."""
        inst = client.install(workspace, self.connector, dict(self.config))
        cls = self.connector_cls(client)
        return inst, {k: self.config[k] for k in cls().secret_fields() if k in self.config}

    def stored_events(self, client, installation_id: str) -> list:
        from hub.core.models import InboundEvent

        with client.rt.db.session() as session:
            return session.scalars(select(InboundEvent).where(InboundEvent.provider == self.connector,
                                                              InboundEvent.scope == installation_id)).all()

    def _require_signature(self, client) -> type[Connector]:
        cls = self.connector_cls(client)
        if isinstance(cls.verify, NoVerification):
            pytest.skip(f"{self.connector} does not verify signatures (NoVerification)")
        return cls

    # -- the checks -----------------------------------------------------------------------------
    def test_bad_signature_is_401(self, client, workspace):
        cls = self._require_signature(client)
        inst, secrets = self.install(client, workspace)
        body = self.encode(cls, self.sample)
        wrong = {k: f"wrong-{v}" for k, v in secrets.items()}
        tampered = body + b" " if cls.body_format == "json" else body + b"&x-conformance=1"
        responses = {"signed with another secret": self.post(client, inst["id"], body, self.headers(), wrong)}
        if not isinstance(cls.verify, SharedToken):  # a token does not cover the body
            responses["body changed after signing"] = self.post(client, inst["id"], tampered, self.headers(),
                                                                secrets, signed_body=body)
        for case, response in responses.items():
            assert response.status_code == 401, f"{case}: {response.status_code} {response.get_data(as_text=True)}"
            assert response.json["error"]["code"] == "bad_signature", case
        assert self.stored_events(client, inst["id"]) == [], "a request with a bad signature was stored"

    def test_missing_signature_is_401(self, client, workspace):
        cls = self._require_signature(client)
        inst, _ = self.install(client, workspace)
        response = self.post(client, inst["id"], self.encode(cls, self.sample), self.headers(), None)
        assert response.status_code == 401, response.get_data(as_text=True)
        assert response.json["error"]["code"] == "bad_signature"
        assert self.stored_events(client, inst["id"]) == [], "an unsigned request was stored"

    def test_redelivery_is_stored_once(self, client, workspace, run_jobs):
        cls = self.connector_cls(client)
        inst, secrets = self.install(client, workspace)
        body, headers = self.encode(cls, self.sample), self.headers()
        first = self.post(client, inst["id"], body, headers, secrets)
        assert first.status_code == 200, first.get_data(as_text=True)
        assert first.json["duplicate"] is False
        again = self.post(client, inst["id"], body, headers, secrets)
        assert again.status_code == 200, again.get_data(as_text=True)
        assert again.json["duplicate"] is True, "the same delivery was stored twice"
        run_jobs(queues=("ingest",))
        events = self.stored_events(client, inst["id"])
        assert len(events) == 1, f"{len(events)} inbound_events rows for one delivery"
        assert events[0].status == "processed", \
            f"the sample was not processed: {events[0].status} {events[0].last_error}"

    def test_secrets_never_returned(self, client, workspace, run_jobs):
        cls = self.connector_cls(client)
        names = cls().secret_fields()
        if not names:
            pytest.skip(f"{self.connector} has no secret config fields")
        values = self.secret_values(cls)
        assert values, f"config sets none of the secret fields {sorted(names)}: nothing to check"
        short = [k for k, v in values.items() if len(v) < 6]
        assert not short, f"use longer secret values in config for {short}, so a match means a leak"
        inst, secrets = self.install(client, workspace)
        assert sorted(inst.get("secrets_set") or []) == sorted(values), "secrets_set should name the set secrets"
        # something to list under events and deliveries too
        self.post(client, inst["id"], self.encode(cls, self.sample), self.headers(), secrets)
        run_jobs(queues=("ingest",))
        h = workspace.headers
        answers = {
            "POST /installations": json.dumps(inst),
            "GET /installations": client.get("/api/v1/installations", headers=h),
            "GET /installations/{id}": client.get(f"/api/v1/installations/{inst['id']}", headers=h),
            "PATCH /installations/{id}": client.patch(f"/api/v1/installations/{inst['id']}", headers=h,
                                                      json={"name": "conformance"}),
            "GET /connectors": client.get("/api/v1/connectors", headers=h),
            "GET /events": client.get("/api/v1/events", headers=h),
            "GET /deliveries": client.get("/api/v1/deliveries", headers=h),
        }
        for where, answer in answers.items():
            if not isinstance(answer, str):
                assert answer.status_code == 200, f"{where}: {answer.status_code}"
                answer = answer.get_data(as_text=True)
            for name, value in values.items():
                assert value not in answer, f"the secret {name!r} is returned by {where}"
        with client.rt.db.session() as session:
            raw_secrets, raw_config = session.execute(
                text("SELECT secrets, config FROM installations WHERE id = :id"), {"id": inst["id"]}).one()
        for name, value in values.items():
            assert value not in str(raw_secrets), f"the secret {name!r} is stored in clear text"
            assert value not in str(raw_config), f"the secret {name!r} is stored in the plain config column"

    def test_config_schema_is_json_schema(self, client, workspace):
        cls = self.connector_cls(client)
        response = client.get("/api/v1/connectors", headers=workspace.headers)
        assert response.status_code == 200
        entry = next((c for c in response.json if c["name"] == self.connector), None)
        assert entry is not None, f"{self.connector} is not listed by GET /api/v1/connectors"
        schema = entry["config_schema"]
        assert schema.get("type") == "object" and isinstance(schema.get("properties"), dict), schema
        props, required = schema["properties"], schema.get("required", [])
        assert isinstance(required, list) and set(required) <= set(props), "required names unknown properties"
        allowed = {"string", "integer", "number", "boolean", "array", "object", "null"}
        for name, spec in props.items():
            assert isinstance(spec, dict), name
            kinds = spec.get("type")
            kinds = kinds if isinstance(kinds, list) else [kinds]
            assert kinds and set(kinds) <= allowed, f"property {name!r} has no valid JSON Schema type: {spec}"
        secret_names = cls().secret_fields()
        for name in props:
            spec = props[name]
            if name in secret_names:
                assert spec.get("writeOnly") is True and spec.get("x-secret") is True, \
                    f"secret field {name!r} is not marked writeOnly/x-secret"
            else:
                assert not spec.get("x-secret") and not spec.get("writeOnly"), f"{name!r} is marked secret"
        assert secret_names <= set(props), f"secret fields missing from the schema: {secret_names - set(props)}"
        missing = [n for n in required if n not in self.config]
        assert not missing, f"the conformance config lacks required fields {missing}"
        for name in self.config:
            assert name in props, f"config key {name!r} is not in the schema"
        assert sorted(entry.get("topics") or []) == sorted(t for t in cls._webhook_handlers if t != "*")

    def test_declared_events_are_valid(self, coexhub_runtime):
        """Events the connector declares (``events = {name: (schema, example, description)}``)
        have a marshmallow schema, an example that passes it, and a dotted name."""
        from marshmallow import Schema as _Schema

        from hub.core.events import EVENT_TYPES, connector_events

        for declared in connector_events(self.connector_cls(coexhub_runtime)):
            assert "." in declared.name and declared.name not in EVENT_TYPES, declared.name
            assert isinstance(declared.schema, type) and issubclass(declared.schema, _Schema), declared.name
            assert not declared.errors(declared.example), (declared.name, declared.errors(declared.example))
            assert declared.json_schema()["type"] == "object"

    def test_handlers_return_valid_actions(self, coexhub_runtime):
        cls = self.connector_cls(coexhub_runtime)
        connector = cls()
        schema = cls.config_schema()
        config = schema.dump(schema.load(dict(self.config)))  # as stored: defaults filled in
        topics = [*sorted(t for t in cls._webhook_handlers if t != "*"), UNKNOWN_TOPIC, None]
        problems: list[str] = []
        for topic in topics:
            if topic in self.handler_exemptions:
                continue
            base = self.samples.get(topic, self.sample)
            if isinstance(base, bytes):
                base = connector.parse(base)
            else:  # what the handler really receives: the decoded body
                base = connector.parse(self.encode(cls, base))
            variants = {"sample": base, "{}": {}, "nulls": nulled(base)}
            if isinstance(base, dict):
                variants["top-level nulls"] = {k: None for k in base}
            for label, payload in variants.items():
                if (topic, label) in self.handler_exemptions:
                    continue
                ctx = Context(workspace_id="ws_conformance", installation_id="ins_conformance",
                              config=dict(config), state={})
                try:
                    actions = connector.handle_webhook(topic, payload, ctx)
                except Exception as exc:
                    problems.append(f"topic {topic!r} with {label}: raised {type(exc).__name__}: {exc}")
                    continue
                if not isinstance(actions, list):
                    problems.append(f"topic {topic!r} with {label}: returned {type(actions).__name__}, not a list")
                    continue
                for action in actions:
                    problems += [f"topic {topic!r} with {label}: {p}" for p in check_action(action)]
                if not _json_ready(ctx.state):
                    problems.append(f"topic {topic!r} with {label}: ctx.state is not JSON-serializable")
        assert not problems, "handlers misbehave:\n" + "\n".join(problems)

    def test_unknown_installation_is_404(self, client):
        cls = self.connector_cls(client)
        secrets = {k: self.config[k] for k in cls().secret_fields() if k in self.config}
        response = self.post(client, f"ins_{_secrets.token_hex(8)}", self.encode(cls, self.sample),
                             self.headers(), secrets)
        assert response.status_code == 404, response.get_data(as_text=True)
        assert response.json["error"]["code"] == "unknown_installation"
