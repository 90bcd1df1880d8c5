"""``coexhub calendly …`` (added through the ``coexhub_cli`` hook)."""
from __future__ import annotations

import json

import click


@click.group()
def calendly() -> None:
    """Calendly connector tools."""


@calendly.command()
@click.option("--installation", "installation_id", required=True, help="the Calendly installation's id (ins_…)")
@click.option("--scope", type=click.Choice(["user", "organization"]), default=None,
              help="default: the installation's subscription_scope")
def subscribe(installation_id: str, scope: str | None) -> None:
    """Create the Calendly webhook subscription pointing at this installation's webhook URL."""
    from connectors.calendly.subscribe import SubscribeError, subscribe_installation
    from hub.cli import runtime

    try:
        result = subscribe_installation(runtime(), installation_id, scope=scope)
    except SubscribeError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    click.echo(f"subscribed: {result['subscription']} → {result['callback_url']}")
    click.echo(json.dumps(result, indent=2))
