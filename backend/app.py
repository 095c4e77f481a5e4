"""The WSGI app: exactly the routes Label Studio's ML-backend protocol needs, and nothing else.

label-studio-ml's `init_app` also serves ``/train``, ``/versions`` and ``/is_training``; ``/train``
writes under a directory named by the request body (a path-traversal write, without auth by
default). So the app is built here with four routes only: ``/health``, ``/setup``, ``/predict``
and ``/webhook``; every other path is a JSON 404.

Every request passes `_check_request` first: Basic auth (on every route), then the
body limits and the content type, before anything parses the body. label-studio-ml pins
Werkzeug 2.0.2, whose multipart parser has known denial-of-service flaws, so only
``application/json`` bodies are ever read.
"""
from __future__ import annotations

import hmac
import logging
import re

from flask import Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from labelloop.label_config.spec import UnsupportedLabelConfig
from labelloop.model.errors import LabelloopError
from labelloop.model.ranking import UnknownStrategyError
from labelloop.model.responses.llm import LLMEndpointError

from .config import Settings
from .connections import ConnectedProjects
from .model import LabelloopModel
from .training import TRAIN_EVENTS, make_trainer

logger = logging.getLogger(__name__)

ROUTES = ("/health", "/setup", "/predict", "/webhook")
# Label Studio's project key is "<id>.<created unix time>"; anything else never names a folder
_PROJECT_KEY = re.compile(r"^\d{1,12}(\.\d{1,12})?$")


def error_response(status: int, message: str):
    """A JSON error whose HTTP reason phrase carries the message too.

    Label Studio shows the reason phrase of a failed /setup to the user (it reports
    ``requests``' HTTPError text, not the body), so the message must live in the status line.
    """
    reason = " ".join(message.split()).encode("latin-1", "replace").decode("latin-1")[:300]
    response = jsonify({"error": message, "status": status})
    response.status = f"{status} {reason}"
    return response


def _project_key(value) -> str | None:
    return str(value) if value is not None and _PROJECT_KEY.match(str(value)) else None


def _health():
    return jsonify({"status": "UP", "model_class": LabelloopModel.__name__})


def _setup():
    data = g.json
    project = _project_key(data.get("project"))
    if project is None:
        return error_response(400, "'project' must be Label Studio's project key, such as \"12.1732550000\"")
    try:
        model = LabelloopModel(label_config=data.get("schema"), project=project,
                               extra_params=data.get("extra_params"), setup=True)
    except UnsupportedLabelConfig as exc:
        logger.warning("/setup refused for project %s: %s", project, exc)
        return error_response(422, f"Unsupported label config: {exc}")
    except LLMEndpointError as exc:
        logger.error("/setup for project %s: %s", project, exc)
        return error_response(502, f"LLM endpoint unusable: {exc}")
    except (UnknownStrategyError, LabelloopError) as exc:
        logger.warning("/setup refused for project %s: %s", project, exc)
        return error_response(422, str(exc))
    _remember_label_studio(data)
    connections: ConnectedProjects = current_app.config["LABELLOOP_CONNECTIONS"]
    connections.secure_webhook_later(int(project.split(".")[0]), request.host_url)
    return jsonify({"model_version": model.model_version})


def _remember_label_studio(data: dict) -> None:
    """Without LABEL_STUDIO_URL/API_KEY, train with the address and token /setup carries.

    Label Studio sends its hostname and the project owner's legacy token; that only works when
    legacy tokens are enabled, so the environment variables stay the documented way. A token
    that is already configured (or remembered) is never replaced.
    """
    settings = LabelloopModel.settings
    token, hostname = data.get("access_token"), data.get("hostname")
    if settings.label_studio_api_key or not isinstance(token, str) or not isinstance(hostname, str) \
            or not token or not hostname:
        return
    settings.label_studio_url = settings.label_studio_url or hostname
    settings.label_studio_api_key = token
    logger.info("no LABEL_STUDIO_API_KEY set: training will use the token from /setup for %s",
                settings.label_studio_url)


def _predict():
    data = g.json
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        return error_response(400, "the request needs a 'tasks' list")
    settings: Settings = LabelloopModel.settings
    if len(tasks) > settings.max_predict_tasks:
        return error_response(413, f"{len(tasks)} tasks in one /predict; the limit is {settings.max_predict_tasks} "
                                   "(LABELLOOP_MAX_PREDICT_TASKS): select fewer tasks")
    project = _project_key(data.get("project"))
    if project is None:
        return error_response(400, "'project' must be Label Studio's project key, such as \"12.1732550000\"")
    try:
        model = LabelloopModel(label_config=data.get("label_config"), project=project)
        results = model.predict(tasks)
    except UnsupportedLabelConfig as exc:
        return error_response(422, f"Unsupported label config: {exc}")
    except LLMEndpointError as exc:
        logger.error("/predict for project %s: %s", project, exc)
        return error_response(502, f"LLM endpoint unusable: {exc}")
    return jsonify({"results": results, "model_version": model.model_version})


def _webhook():
    """Answer at once; training happens in the background (Label Studio waits 1 s at most).

    Only projects that connected this backend are acted on: any other project id gets
    ``ignored`` and changes nothing.
    """
    action = g.json.get("action")
    project = g.json.get("project")
    project_id = project.get("id") if isinstance(project, dict) else None
    if not isinstance(action, str) or action not in TRAIN_EVENTS:
        return jsonify({"status": "ignored", "reason": "not a training event"}), 200
    if not isinstance(project_id, int) or isinstance(project_id, bool) or project_id < 1:
        return jsonify({"status": "ignored", "reason": "no project id"}), 200
    connections: ConnectedProjects = current_app.config["LABELLOOP_CONNECTIONS"]
    connected = connections.is_connected(project_id, request.host_url)
    if connected is None:
        return error_response(503, "cannot check with Label Studio whether this project connected this backend; "
                                   "nothing queued")
    if not connected:
        logger.warning("webhook %s for project %s, which has not connected this backend; ignored", action, project_id)
        return jsonify({"status": "ignored", "reason": "project not connected to this backend"}), 200
    logger.info("webhook %s for project %s: training queued", action, project_id)
    current_app.config["LABELLOOP_TRAINER"].submit(project_id, action)
    return jsonify({"status": "queued", "action": action, "project": project_id}), 201


def _authorized(settings: Settings) -> bool:
    if not settings.basic_auth_user:
        return True
    auth = request.authorization
    return (auth is not None
            and hmac.compare_digest((auth.username or "").encode(), settings.basic_auth_user.encode())
            and hmac.compare_digest((auth.password or "").encode(), (settings.basic_auth_pass or "").encode()))


def _check_request():
    """Auth, then limits and content type, all before the body is read."""
    if request.path not in ROUTES:
        return None  # Flask answers 404/405 through the error handler
    settings: Settings = LabelloopModel.settings
    if not _authorized(settings):
        response = error_response(401, "Basic authentication required")
        response.headers["WWW-Authenticate"] = 'Basic realm="labelloop"'
        return response
    if request.method != "POST":
        return None
    length = request.content_length
    if length is not None and length > settings.max_request_bytes:
        return error_response(413, f"the request body is {length} bytes; the limit is {settings.max_request_bytes} "
                                   "(LABELLOOP_MAX_REQUEST_BYTES)")
    if request.mimetype != "application/json":
        return error_response(415, f"the request body must be application/json, not {request.mimetype or 'empty'}")
    body = request.get_json(silent=True)  # reads at most MAX_CONTENT_LENGTH bytes
    if not isinstance(body, dict):
        return error_response(400, "the request body must be a JSON object")
    g.json = body
    return None


def _http_error(exc: HTTPException):
    messages = {404: f"not found: this backend serves only {', '.join(ROUTES)}",
                413: "the request body is over LABELLOOP_MAX_REQUEST_BYTES"}
    return error_response(exc.code or 500, messages.get(exc.code, exc.description or exc.name))


def _unexpected_error(exc: Exception):
    logger.exception("unexpected error in %s", request.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app, configured from ``settings`` (default: the environment)."""
    settings = settings or Settings.from_env()
    LabelloopModel.configure(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.add_url_rule("/health", "health", _health, methods=["GET"])
    app.add_url_rule("/setup", "setup", _setup, methods=["POST"])
    app.add_url_rule("/predict", "predict", _predict, methods=["POST"])
    app.add_url_rule("/webhook", "webhook", _webhook, methods=["POST"])
    app.before_request(_check_request)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.config["LABELLOOP_TRAINER"] = make_trainer(settings, LabelloopModel.registry)
    app.config["LABELLOOP_CONNECTIONS"] = ConnectedProjects(settings)
    return app
