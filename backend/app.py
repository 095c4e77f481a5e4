"""The WSGI app: label-studio-ml's Flask server with labelloop's /setup, /predict and /webhook.

label-studio-ml 1.0.9 keeps a single model for all projects, reloads it on every /setup and
trains in a new process per webhook. We keep its server, routes, /health and error format, and
replace those three views so that models are per project, cached, and never block /predict.
Basic auth and JSON validation run before every request.
"""
from __future__ import annotations

import hmac
import logging

from flask import Flask, current_app, g, jsonify, request

from labelloop.label_config.spec import UnsupportedLabelConfig
from labelloop.model.query_strategies import UnknownStrategyError

from .config import Settings
from .model import LabelloopModel
from .training import TRAIN_EVENTS, make_trainer

logger = logging.getLogger(__name__)

_JSON_ENDPOINTS = {"_setup", "_predict", "webhook", "_train", "get_version"}


def error_response(status: int, message: str):
    """A JSON error whose HTTP reason phrase carries the message too.

    Label Studio shows the reason phrase of a failed /setup to the user (it reports
    ``requests``' HTTPError text, not the body), so the message must live in the status line.
    """
    reason = " ".join(message.split()).encode("latin-1", "replace").decode("latin-1")[:300]
    response = jsonify({"error": message, "status": status})
    response.status = f"{status} {reason}"
    return response


def _setup():
    data = g.json
    try:
        model = LabelloopModel(label_config=data.get("schema"), project=data.get("project"),
                               extra_params=data.get("extra_params"))
    except UnsupportedLabelConfig as exc:
        logger.warning("/setup refused for project %s: %s", data.get("project"), exc)
        return error_response(422, f"Unsupported label config: {exc}")
    except UnknownStrategyError as exc:
        return error_response(422, str(exc))
    _remember_label_studio(data)
    return jsonify({"model_version": model.model_version})


def _remember_label_studio(data: dict) -> None:
    """Without LABEL_STUDIO_URL/API_KEY, train with the address and token /setup carries.

    Label Studio sends its hostname and the project owner's legacy token; that only works when
    legacy tokens are enabled, so the environment variables stay the documented way.
    """
    settings = LabelloopModel.settings
    if settings.label_studio_api_key or not data.get("access_token") or not data.get("hostname"):
        return
    settings.label_studio_url = settings.label_studio_url or str(data["hostname"])
    settings.label_studio_api_key = str(data["access_token"])
    logger.info("no LABEL_STUDIO_API_KEY set: training will use the token from /setup for %s",
                settings.label_studio_url)


def _predict():
    data = g.json
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        return error_response(400, "the request needs a 'tasks' list")
    try:
        model = LabelloopModel(label_config=data.get("label_config"), project=data.get("project"))
    except UnsupportedLabelConfig as exc:
        return error_response(422, f"Unsupported label config: {exc}")
    results = model.predict(tasks)
    return jsonify({"results": results, "model_version": model.model_version})


def _webhook():
    """Answer at once; training happens in the background (Label Studio waits 1 s at most)."""
    action = g.json.get("action")
    project = g.json.get("project")
    project_id = project.get("id") if isinstance(project, dict) else None
    if action not in TRAIN_EVENTS:
        return jsonify({"status": "ignored", "action": action}), 200
    if not isinstance(project_id, int):
        logger.warning("webhook %s without a project id; ignored", action)
        return jsonify({"status": "ignored", "reason": "no project id"}), 200
    logger.info("webhook %s for project %s: training queued", action, project_id)
    current_app.config["LABELLOOP_TRAINER"].submit(project_id, action)
    return jsonify({"status": "queued", "action": action, "project": project_id}), 201


def _check_request():
    settings: Settings = LabelloopModel.settings
    if settings.basic_auth_user:
        auth = request.authorization
        ok = (auth is not None
              and hmac.compare_digest(auth.username or "", settings.basic_auth_user)
              and hmac.compare_digest(auth.password or "", settings.basic_auth_pass or ""))
        if not ok:
            response = error_response(401, "Basic authentication required")
            response.headers["WWW-Authenticate"] = 'Basic realm="labelloop"'
            return response
    if request.method == "POST" and request.endpoint in _JSON_ENDPOINTS:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return error_response(400, "the request body must be a JSON object")
        g.json = body
    return None


def create_app(settings: Settings | None = None) -> Flask:
    """Configure and return the Flask app (one per process; calling again reconfigures it)."""
    from label_studio_ml.api import init_app

    settings = settings or Settings.from_env()
    LabelloopModel.configure(settings)
    app = init_app(LabelloopModel, model_dir=settings.model_dir)
    app.view_functions["_setup"] = _setup
    app.view_functions["_predict"] = _predict
    app.view_functions["webhook"] = _webhook
    app.config["LABELLOOP_TRAINER"] = make_trainer(settings, LabelloopModel.registry)
    if not app.config.get("LABELLOOP_CONFIGURED"):
        app.before_request(_check_request)
        app.config["LABELLOOP_CONFIGURED"] = True
    return app
