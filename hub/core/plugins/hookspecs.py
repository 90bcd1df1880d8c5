"""The hooks a coexhub plugin can implement.

A plugin is any module registered under the ``coexhub`` entry-point group that
implements some of these with ``@hookimpl``. Every argument is passed by keyword.
Built-in connectors are plugins exactly like third-party ones.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("coexhub")
hookimpl = pluggy.HookimplMarker("coexhub")


@hookspec
def coexhub_connectors():
    """Return a list of ``Connector`` subclasses this plugin provides."""


@hookspec
def coexhub_blueprints(app):
    """Return a list of Flask blueprints to mount on ``app`` (e.g. extra routes)."""


@hookspec
def coexhub_cli(cli):
    """Add click commands or groups to the ``coexhub`` command group ``cli``."""


@hookspec
def coexhub_whatsapp_event(event, workspace):
    """React to every normalized WhatsApp domain event of ``workspace``.

    ``event`` is a ``DomainEvent`` (``event.type`` such as ``message.received``,
    ``event.data`` a dict). Return a list of actions (or None) for the hub to execute.
    """


@hookspec(firstresult=True)
def coexhub_payment_link(workspace_id, amount, currency, reference, customer, description, provider):
    """Create a payment link for ``amount`` (a decimal string in ``currency``'s major unit).

    Implemented by payment connectors (Stripe, Razorpay); called in a worker, so it may call the
    provider (through ``outbound_url``). ``reference`` must be stored on the link (metadata,
    ``reference_id``) so the paid webhook can return ``PaymentReceived(reference, …)``;
    ``reference`` is ``"<installation id>:<key>"`` (``hub.core.paylinks``) and is the same on every
    retry of one link request; ``customer`` is ``{"phone", "name", "email"}`` (any may be None).
    An exception is retried with backoff (then dead-lettered). Return a ``PaymentLink``,
    or None when this plugin has no enabled installation in the workspace (or ``provider`` names
    another one). Without a provider chosen by the store, the hub calls this with
    ``provider=<connector name>`` for each enabled installation, oldest first, then with None.
    """
