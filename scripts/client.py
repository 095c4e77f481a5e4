"""The Label Studio SDK client, configured like Label Studio itself (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)."""
from __future__ import annotations

import os

import requests

from labelloop.model.errors import LabelloopError

DEFAULT_URL = "http://localhost:8080"


class LabelStudioUnavailable(LabelloopError):
    """Label Studio cannot be reached, or no API key was given."""


def connect(url: str | None = None, api_key: str | None = None, *, check: bool = True,
            timeout: float | None = None):
    """A `label_studio_sdk.LabelStudio` client; legacy tokens and personal access tokens both work.

    With ``check``, Label Studio's /health is called first so that a wrong URL fails with a clear
    message instead of a stack trace from deep inside the SDK. ``timeout``: seconds per request
    (the SDK's default is 60).
    """
    from label_studio_sdk import LabelStudio

    url = (url or os.environ.get("LABEL_STUDIO_URL") or DEFAULT_URL).rstrip("/")
    api_key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
    if not api_key:
        raise LabelStudioUnavailable(
            "no API key: set LABEL_STUDIO_API_KEY (Label Studio > Account & Settings > "
            "Personal Access Token, or a legacy token)")
    if check:
        try:
            response = requests.get(f"{url}/health", timeout=10)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise LabelStudioUnavailable(f"Label Studio is not reachable at {url}: {exc}") from exc
    return LabelStudio(base_url=url, api_key=api_key, timeout=timeout)


def error_text(exc: BaseException) -> str:
    """``exc`` in one line for a message or a log. For the SDK's ``ApiError``: ``HTTP <status>:
    <Label Studio's detail>``, since its own ``str`` holds every response header, the session
    cookie Label Studio sets included."""
    from label_studio_sdk.core.api_error import ApiError

    if not isinstance(exc, ApiError):
        return str(exc)
    body = exc.body
    detail = (body.get("detail") or body.get("validation_errors")) if isinstance(body, dict) else body
    return f"HTTP {exc.status_code}: {' '.join(str(detail or 'no detail').split())[:300]}"


def label_studio_error(exc: BaseException) -> str | None:
    """What a person should read when an SDK call fails: a refused API key, a project that is not
    there, or Label Studio gone mid-command. None for errors that are not Label Studio's."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    if isinstance(exc, httpx.TransportError):
        return f"Label Studio stopped answering ({type(exc).__name__}: {exc}); nothing was changed after that"
    if not isinstance(exc, ApiError):
        return None
    if exc.status_code in (401, 403):
        return (f"Label Studio refused the API key ({error_text(exc)}): check LABEL_STUDIO_API_KEY "
                "(Account & Settings > Personal Access Token, or a legacy token)")
    if exc.status_code == 404:
        return f"Label Studio has no such object ({error_text(exc)}): check --project and the other IDs"
    return f"Label Studio refused a request ({error_text(exc)})"


def task_url(client, project_id: int, task_id) -> str:
    """The address that opens a task in Label Studio's labelling panel, for a person to click."""
    wrapper = getattr(client, "_client_wrapper", None)  # the SDK keeps its base URL there, with no public accessor
    base = wrapper.get_base_url() if wrapper is not None else os.environ.get("LABEL_STUDIO_URL") or DEFAULT_URL
    return f"{base.rstrip('/')}/projects/{int(project_id)}/data?task={int(task_id)}"


def as_dict(obj) -> dict:
    """An SDK response model (pydantic) or a plain dict, as a JSON-ready dict."""
    if isinstance(obj, dict):
        return obj
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else dict(obj)
