"""The ``coexhub`` command: init, serve, worker, scheduler, up, rotate-key (and plugin commands)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import click

from hub import sdk_cli, sim_cli, user_cli
from hub.config import Settings

log = logging.getLogger("hub.cli")
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
SIMULATOR_PORT_OFFSET = 765  # `coexhub up` runs the simulator on its own port + 765 (8765 by default)


def runtime():
    from hub.core.runtime import Runtime, current, install

    try:
        return current()
    except Exception:
        return install(Runtime(Settings.from_env()))


def host_port(f):
    f = click.option("--host", default=DEFAULT_HOST, show_default=True, help="address to bind")(f)
    return click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", DEFAULT_PORT)),
                        show_default="8000 or $PORT", help="port to bind")(f)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def cli(verbose: bool) -> None:
    """coexhub — a WhatsApp Coexistence connector hub."""
    from hub.core.logs import configure

    configure(verbose=verbose)  # plain text, or JSON lines with COEXHUB_LOG_FORMAT=json
    from hub.core.runtime import installed

    preinstalled = installed()  # a runtime someone else made (tests) is not the command's to close
    click.get_current_context().call_on_close(lambda: _close_runtime(preinstalled))


def _close_runtime(preinstalled) -> None:
    """When a command ends, stop the embedded Redis it started (if nothing else uses it)."""
    from hub.core.runtime import installed

    rt = installed()
    if rt is not None and rt is not preinstalled:
        rt.close()


@cli.command()
@click.option("--workspace", "workspace_name", default="Default", show_default=True)
def init(workspace_name: str) -> None:
    """Run migrations, create the first workspace (its API key is printed once) and the console's
    instance admin admin@localhost (password saved in $COEXHUB_DATA_DIR/admin.password)."""
    from sqlalchemy import select

    from hub.api.workspaces import create_workspace
    from hub.core.models import Workspace

    rt = runtime()
    rt.db.migrate()
    click.echo(f"database ready: {rt.db.engine.url.render_as_string(hide_password=True)}")
    created = None
    with rt.db.session() as session:
        existing = session.scalars(select(Workspace).order_by(Workspace.created_at)).all()
        if existing:
            names = ", ".join(f"{w.id} ({w.name!r})" for w in existing)
            click.echo(f"workspaces exist already ({names}); none created")
        else:
            workspace, key = create_workspace(session, workspace_name)
            created = workspace.id
            click.echo(f"workspace {workspace.id} ({workspace_name!r}) created")
            click.echo(f"workspace {workspace.id} ({workspace_name!r}) — API key (shown once): {key}")
    user_cli.first_admin(rt, created)
    if "admin.token" in rt.settings.generated:
        click.echo(f"admin token (saved in {rt.settings.data_dir / 'admin.token'}): {rt.settings.admin_token}")


@cli.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    runtime().db.migrate()
    click.echo("migrated")


@cli.command("events-doc")
@click.option("--check", is_flag=True, help="only check that docs/events.md matches the catalogue (exit 1 if not)")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="write here instead of docs/events.md")
def events_doc(check: bool, output: str | None) -> None:
    """Write docs/events.md from the event catalogue's schemas (hub/core/events)."""
    from pathlib import Path

    from hub.core.events import docs

    path = Path(output) if output else docs.DOC
    if check:
        if not path.exists() or path.read_text(encoding="utf-8") != docs.render():
            raise click.ClickException(f"{path} is out of date: run `coexhub events-doc`")
        click.echo(f"{path} is up to date")
        return
    click.echo(f"wrote {docs.write(path)}")


@cli.command("rotate-key")
@click.option("--generate", is_flag=True, help="only print a new Fernet key (put it first in COEXHUB_SECRET_KEY)")
@click.option("--check", is_flag=True, help="only check that every secret decrypts with the first key alone")
def rotate_key(generate: bool, check: bool) -> None:
    """Re-encrypt every stored secret under the first key of COEXHUB_SECRET_KEY (docs/operations.md)."""
    from hub.core import keys

    try:
        click.echo(keys.generate_key() if generate else keys.rotate_command(runtime(), check=check))
    except keys.RotationError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command("id")
@click.argument("value")
@click.argument("kind", required=False)
def public_id(value: str, kind: str | None) -> None:
    """Translate ids: ``coexhub id snd_…`` prints the row number logs show; ``coexhub id 42 snd``
    prints the id the API shows for send 42 (prefixes: ct msg snd tpl evt dlv)."""
    from hub.api import ids

    codec = ids.codec(Settings.from_env())
    if kind is None:
        number = codec.decode_any(value)
        if number is None:
            raise click.ClickException(f"{value!r} is not an id of this hub (or its key changed)")
        click.echo(f"{ids.KINDS[value.split('_', 1)[0]]} {number}")
        return
    if kind not in ids.KINDS or not (value.isascii() and value.isdigit() and 0 < int(value) < 2**63):
        raise click.ClickException(f"usage: coexhub id NUMBER KIND, KIND one of {' '.join(ids.KINDS)}")
    click.echo(codec.encode(kind, int(value)))


@cli.command()
@host_port
def serve(host: str, port: int) -> None:
    """Run the web app with the development server (in production: gunicorn -k
    uvicorn_worker.UvicornWorker 'hub.asgi:app')."""
    from hub.app import create_app

    rt = runtime()
    rt.db.migrate()
    app = create_app(runtime=rt)
    rt.settle()
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@cli.command()
@click.option("--queue", "queues", multiple=True, help="queues to serve (default: all, send first)")
@click.option("--fork/--simple", default=None,
              help="fork a work horse per job (RQ Worker; plugins loaded once in the parent) or run "
                   "jobs in-process (SimpleWorker; the default: pooled database and Graph connections)")
@click.option("--burst", is_flag=True, help="stop when the queues are empty")
def worker(queues: tuple[str, ...], fork: bool | None, burst: bool) -> None:
    """Run an RQ worker on the hub's queues (survives Redis going away and coming back)."""
    from hub.core.workers import serve

    serve(runtime(), list(queues) or None, fork=bool(fork), burst=burst)


@cli.command()
@click.option("--interval", type=float, default=1.0, show_default=True)
def scheduler(interval: float) -> None:
    """Move due scheduled sends into RQ and re-enqueue work Redis or a worker lost."""
    from hub.core.scheduler import run_forever

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        run_forever(runtime(), interval, stop=lambda: bool(stopping))
    except KeyboardInterrupt:
        pass


@cli.command()
@host_port
@click.option("--workers", type=int, default=2, show_default=True, help="worker processes")
@click.option("--simulator-port", type=int, default=None, show_default="port + 765, so 8765",
              help="the Graph API simulator's port (when no Meta app is configured)")
def up(host: str, port: int, workers: int, simulator_port: int | None) -> None:
    """Web + workers + scheduler on one machine (embedded defaults when nothing is configured)."""
    from hub.core.queue import socket_url

    rt = runtime()
    rt.db.migrate()
    env = dict(os.environ)
    url = socket_url(rt.redis) if rt.settings.embedded_redis else None
    if url:  # children share the embedded server this process started
        env["COEXHUB_REDIS_URL"] = url
    base = [sys.executable, "-m", "hub.cli"]
    children = []
    if not rt.settings.meta_app_secret:  # no Meta app configured: talk to the bundled simulator
        from hub.demo import dev_env

        sim_port = simulator_port or port + SIMULATOR_PORT_OFFSET
        hub_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        env.update(dev_env(f"http://127.0.0.1:{sim_port}"))
        children.append(subprocess.Popen(base + ["simulator", "--port", str(sim_port),
                                                 "--hub-url", f"http://{hub_host}:{port}"], env=env))
        click.echo(f"no Meta app configured: using the Graph API simulator on http://127.0.0.1:{sim_port} "
                   f"(drive it with `coexhub simulator --help`; set COEXHUB_SIMULATOR_URL if not on 8765)")
    children += [subprocess.Popen(base + ["worker", "--simple"], env=env) for _ in range(workers)]
    children.append(subprocess.Popen(base + ["scheduler"], env=env))
    children.append(subprocess.Popen(base + ["serve", "--host", host, "--port", str(port)], env=env))
    click.echo(f"coexhub up on http://{host}:{port} ({workers} workers, scheduler); Ctrl-C stops")
    click.echo(f"admin token: {rt.settings.data_dir / 'admin.token'}; API docs: http://{host}:{port}/api/v1/docs")
    click.echo(f"console: http://{host}:{port}/ — sign in as admin@localhost, password in "
               f"{user_cli.password_file(rt.settings)} (or `coexhub user passwd admin@localhost`)")
    stop_children_on_exit(children)


@cli.group("rate-card")
def rate_card() -> None:
    """The rate card that prices messages (estimates and spend): show it or load a newer one."""


@rate_card.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--markets", "markets_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="country,market CSV (default: the shipped mapping to Meta's markets)")
@click.option("--workspace", "workspace_id", default=None, help="load it as this workspace's own card")
def rate_card_load(file: str, markets_file: str | None, workspace_id: str | None) -> None:
    """Validate FILE (CSV: market,category,price,price_in_window,currency,effective_from,source)
    and make it the instance's rate card (or one workspace's)."""
    from pathlib import Path

    from hub.core.models import Workspace
    from hub.core.pricing import ratecard

    try:
        rates, markets = ratecard.parse(Path(file).read_text(encoding="utf-8"),
                                        Path(markets_file).read_text(encoding="utf-8") if markets_file else None)
    except (ratecard.RateCardError, UnicodeDecodeError) as exc:
        raise click.ClickException(str(exc)) from exc
    with runtime().db.session() as session:
        if workspace_id and session.get(Workspace, workspace_id) is None:
            raise click.ClickException(f"no workspace {workspace_id}")
        ratecard.store(session, rates, markets, workspace_id=workspace_id, source=Path(file).name)
    log.info("rate card %s loaded for %s: %d rows", file, workspace_id or "the instance", len(rates))
    click.echo(f"loaded {len(rates)} rates ({len(set(markets.values()))} markets, {len(markets)} countries) "
               f"for {workspace_id or 'the instance'}")


@rate_card.command("show")
@click.option("--workspace", "workspace_id", default=None)
def rate_card_show(workspace_id: str | None) -> None:
    """Print the rate card in effect (the workspace's, the instance's or the shipped one)."""
    from hub.core.pricing import ratecard

    with runtime().db.session() as session:
        card = ratecard.current(session, workspace_id)
    click.echo(f"# origin: {card.origin}; source: {card.source}")
    for (market, category), rows in sorted(card.rates.items()):
        for row in rows:
            click.echo(f"{market},{category},{row['price']},{row['price_in_window'] or ''},{row['currency']},"
                       f"{row['effective_from']}")


@cli.group()
def connections() -> None:
    """WhatsApp connections: list, connect by token, onboard from a signup code, disconnect."""


@connections.command("list")
@click.option("--workspace", "workspace_id", default=None, help="only this workspace")
def connections_list(workspace_id: str | None) -> None:
    from sqlalchemy import select

    from hub.core.models import Connection

    with runtime().db.session() as session:
        query = select(Connection).order_by(Connection.created_at)
        if workspace_id:
            query = query.where(Connection.workspace_id == workspace_id)
        for conn in session.scalars(query):
            click.echo(f"{conn.id}  {conn.workspace_id}  +{conn.display_phone_number or '?'}  {conn.mode:<11} "
                       f"{conn.messages_per_second}/s  {conn.status}{'  ' + conn.pause_reason if conn.pause_reason else ''}")


def _connect_options(f):
    for option in reversed([
            click.option("--workspace", "workspace_id", required=True),
            click.option("--waba", "waba_id", required=True, help="WhatsApp Business Account id"),
            click.option("--phone-number-id", default=None, help="default: the WABA's first number"),
            click.option("--history/--no-history", default=False, help="request chat history import")]):
        f = option(f)
    return f


def _run_onboarding(action) -> None:
    from hub.core.whatsapp.graph import Graph
    from hub.core.whatsapp.onboarding import OnboardingError

    rt = runtime()
    with rt.db.session() as session:
        try:
            conn = action(session, Graph.from_settings(rt.settings), rt)
        except OnboardingError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"connected {conn.id}: +{conn.display_phone_number} ({conn.mode}, {conn.messages_per_second}/s)")


@connections.command("connect")
@_connect_options
@click.option("--token", required=True, envvar="COEXHUB_CONNECT_TOKEN", help="business access token")
@click.option("--mode", type=click.Choice(["coexistence", "cloud_api"]), default="coexistence", show_default=True)
def connections_connect(workspace_id, waba_id, phone_number_id, history, token, mode) -> None:
    """Connect a number with an access token you already have."""
    from hub.core.whatsapp.onboarding import connect

    _run_onboarding(lambda session, graph, rt: connect(
        session, graph, workspace_id, token=token, waba_id=waba_id, phone_number_id=phone_number_id,
        mode=mode, history=history))


@connections.command("onboard")
@_connect_options
@click.option("--code", required=True, help="the Embedded Signup code")
def connections_onboard(workspace_id, waba_id, phone_number_id, history, code) -> None:
    """Finish Embedded Signup (Coexistence) from its code."""
    from hub.core.whatsapp.onboarding import onboard

    _run_onboarding(lambda session, graph, rt: onboard(
        session, graph, rt.settings, workspace_id, code=code, waba_id=waba_id, phone_number_id=phone_number_id,
        history=history))


@connections.command("disconnect")
@click.argument("connection_id")
def connections_disconnect(connection_id: str) -> None:
    """Stop using a number (messages, contacts and queued sends are kept)."""
    from hub.core.models import Connection

    with runtime().db.session() as session:
        conn = session.get(Connection, connection_id)
        if conn is None:
            raise click.ClickException(f"no connection {connection_id}")
        conn.status, conn.pause_reason = "disconnected", "disconnected from the CLI"
    click.echo(f"{connection_id} disconnected")


@cli.command()
def demo() -> None:
    """Play a full Coexistence flow against the bundled Graph API simulator and show the result."""
    from hub.demo import run_demo

    rt = runtime()
    rt.db.migrate()
    run_demo(rt)


@cli.group(invoke_without_command=True)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="address to bind")
@click.option("--port", type=int, default=DEFAULT_PORT + SIMULATOR_PORT_OFFSET, show_default=True,
              help="port to bind (`coexhub up` uses its own port + 765)")
@click.option("--hub-url", default=None, help="where to deliver webhooks (the hub's base URL)")
@click.option("--app-secret", default=None, help="signs webhooks (default: COEXHUB_META_APP_SECRET or the dev secret)")
@click.option("--no-demo", is_flag=True, help="start empty instead of with the demo number and templates")
@click.pass_context
def simulator(ctx, host: str, port: int, hub_url: str | None, app_secret: str | None, no_demo: bool) -> None:
    """Run the Graph API simulator, or drive a running one (the commands below, over HTTP).

    Without a command it serves the simulator (tests, the demo, local development): Meta's send
    endpoint with its limits and errors, the onboarding calls, signed webhooks to --hub-url and
    statuses (sent, delivered, read) posted by themselves. The commands talk to a running
    simulator at --url (default $COEXHUB_SIMULATOR_URL or http://127.0.0.1:8765), through its
    control API under /_sim (documented in docs/getting-started.md).
    """
    if ctx.invoked_subcommand is not None:
        return
    from hub.demo import DEV_META
    from hub.testing.simulator import run

    secret = app_secret or Settings.from_env().meta_app_secret or DEV_META["meta_app_secret"]
    run(host, port, hub_url, secret, seed_demo=not no_demo, app_id=DEV_META["meta_app_id"])


sim_cli.register(simulator)  # numbers, add-number, customer-message, owner-reply, contact-sync, ...
sdk_cli.register(cli)  # connectors, new-connector
user_cli.register(cli)  # user create, user passwd


def stop_children_on_exit(children: list[subprocess.Popen]) -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


def main() -> None:
    from hub.core.plugins.manager import Plugins

    try:
        Plugins(Settings.from_env().plugins).hook.coexhub_cli(cli=cli)
    except Exception as exc:  # a broken plugin must not make the CLI unusable
        click.echo(f"warning: plugin commands not loaded: {exc}", err=True)
    cli()


if __name__ == "__main__":
    main()
