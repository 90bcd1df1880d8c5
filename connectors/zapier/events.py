"""The Zapier app's trigger list, ``connectors/zapier/app/events.json``, written from the hub's
event catalogue (core events plus those of the connectors this repository ships).

    python -m connectors.zapier.events          # rewrite events.json
    python -m connectors.zapier.events --check  # exit 1 when it drifted (tests do the same)

The app builds one REST-hook trigger per entry; its tests compare the list with the live hub's
``GET /api/v1/event-types``.
"""
from __future__ import annotations

import importlib
import json
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hub.core.events import catalogue

ROOT = Path(__file__).resolve().parents[2]
APP_EVENTS = Path(__file__).resolve().parent / "app" / "events.json"
SAMPLE_TIME = "2026-11-30T09:12:44Z"


def builtin_connectors() -> list[type]:
    """Connector classes of the plugins pyproject.toml registers (``[project.entry-points.coexhub]``)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    classes: list[type] = []
    for target in pyproject["project"]["entry-points"]["coexhub"].values():
        module = importlib.import_module(target.split(":")[0])
        provide = getattr(module, "coexhub_connectors", None)
        classes += list(provide() or []) if provide else []
    return classes


def app_events() -> dict[str, Any]:
    """What events.json must contain."""
    connectors = builtin_connectors()
    events = catalogue(SimpleNamespace(connectors=connectors))
    return {
        "generated_by": "python -m connectors.zapier.events",
        "sources": ["core", *sorted(c.name for c in connectors)],
        "events": [{"type": e.name, "description": e.description, "source": e.source,
                    "example": {"id": f"evt_example_{e.name.replace('.', '_')}", "type": e.name,
                                "timestamp": SAMPLE_TIME, "workspace_id": "ws_example", "data": e.example}}
                   for e in sorted(events.values(), key=lambda e: e.name)],
    }


def render() -> str:
    return json.dumps(app_events(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if not APP_EVENTS.exists() or APP_EVENTS.read_text() != render():
            print(f"{APP_EVENTS} drifted from the event catalogue: run python -m connectors.zapier.events")
            return 1
        return 0
    APP_EVENTS.write_text(render())
    print(f"wrote {APP_EVENTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
