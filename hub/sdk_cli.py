"""``coexhub connectors`` (what is installed) and ``coexhub new-connector NAME`` (a plugin skeleton)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template
from typing import Any

import click

from hub.config import Settings

NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


def describe(cls) -> dict[str, Any]:
    """What ``coexhub connectors --json`` prints for one connector class."""
    from hub.core.connectors import config_json_schema

    schema = config_json_schema(cls.config_schema)
    return {"name": cls.name, "title": cls.title or cls.name.title(), "module": cls.__module__,
            "topics": sorted(t for t in cls._webhook_handlers if t != "*"),
            "catch_all": "*" in cls._webhook_handlers,
            "whatsapp_events": sorted({e for events, _, _ in cls._whatsapp_handlers for e in events}),
            "poll_every": cls.poll_every, "config_schema": schema}


def _field_line(name: str, spec: dict[str, Any], required: list[str]) -> str:
    kind = spec.get("type", "?")
    if kind == "array" and isinstance(spec.get("items"), dict):
        kind = f"array of {spec['items'].get('type', '?')}"
    marks = [kind] + (["required"] if name in required else []) + (["secret"] if spec.get("x-secret") else [])
    if "default" in spec:
        marks.append(f"default {json.dumps(spec['default'])}")
    text = f"    {name} ({', '.join(marks)})"
    return text + (f": {spec['description']}" if spec.get("description") else "")


def _connector_classes() -> list:
    from hub.core.plugins.manager import Plugins
    from hub.core.runtime import installed

    rt = installed()  # a runtime made already (tests) knows its extra plugins; else load the entry points
    plugins = rt.plugins if rt is not None else Plugins(Settings.from_env().plugins)
    return sorted(plugins.connectors.values(), key=lambda c: c.name)


@click.command("connectors")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list (name, topics, config JSON Schema…)")
def connectors(as_json: bool) -> None:
    """List installed connectors with their webhook topics and config fields."""
    found = [describe(cls) for cls in _connector_classes()]
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    if not found:
        click.echo("no connectors installed (plugins register under the 'coexhub' entry point)")
    for c in found:
        click.echo(f"{c['name']}  {c['title']}  ({c['module']})")
        topics = c["topics"] + (["* (any other)"] if c["catch_all"] else [])
        click.echo(f"  topics: {', '.join(topics) or '-'}")
        if c["whatsapp_events"]:
            click.echo(f"  whatsapp events: {', '.join(c['whatsapp_events'])}")
        if c["poll_every"]:
            click.echo(f"  polls every {c['poll_every']}s")
        props, required = c["config_schema"]["properties"], c["config_schema"]["required"]
        click.echo("  config:" + ("" if props else " -"))
        for name, spec in props.items():
            click.echo(_field_line(name, spec, required))


@click.command("new-connector")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where to write the package (default: ./coexhub-NAME)")
def new_connector(name: str, directory: Path | None) -> None:
    """Write a plugin package skeleton for connector NAME: pyproject with the entry point, the
    connector, tests (test kit + conformance) and a README. It passes its own tests as written."""
    if not NAME.match(name):
        raise click.BadParameter("lowercase letters and digits, words joined by '-' or '_' (e.g. my-shop)",
                                 param_hint="NAME")
    target = directory or Path(f"coexhub-{name}")
    if target.exists() and any(target.iterdir()):
        raise click.ClickException(f"{target} exists and is not empty")
    for path in write_skeleton(name, target):
        click.echo(f"wrote {path}")
    click.echo(f"next: cd {target} && pip install -e . && pytest")


def write_skeleton(name: str, target: Path) -> list[Path]:
    """Write the skeleton of connector ``name`` into ``target``; the paths written."""
    from hub import sdk_skeleton

    module = "coexhub_" + name.replace("-", "_")
    words = re.split(r"[-_]", name)
    values = {"name": name, "module": module, "cls": "".join(w.title() for w in words),
              "header": "-".join(w.title() for w in words), "title": " ".join(w.title() for w in words)}
    written = []
    for relative, text in sdk_skeleton.FILES.items():
        path = target / Template(relative).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values))
        written.append(path)
    return written


def register(cli: click.Group) -> None:
    cli.add_command(connectors)
    cli.add_command(new_connector)
