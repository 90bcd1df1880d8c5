"""The API docs page: flask-smorest renders Swagger UI at ``/api/v1/docs`` from the assets of the
``swagger-ui-bundle`` Python package, served here, so the page works offline."""
from __future__ import annotations

from flask import Blueprint, redirect, send_from_directory
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("apidocs", __name__)
ASSETS = "/api/v1/docs/assets/"  # OPENAPI_SWAGGER_UI_URL (hub.app)


@bp.get(ASSETS + "<path:filename>")
def asset(filename: str):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)


@bp.get("/docs")
def docs():
    return redirect("/api/v1/docs")
