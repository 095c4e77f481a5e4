"""Which Label Studio projects connected this backend, and their webhooks' credentials.

The backend acts only on projects whose ML backends in Label Studio include its own URL.
Label Studio 1.23 sends no ML-backend credentials with webhooks (it creates a plain project
webhook to ``<backend URL>/webhook``), so when the backend uses Basic auth it puts the same
``Authorization`` header on that webhook through the API.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from .client import as_dict


def normalise_url(url: str) -> str:
    """``scheme://host:port/path`` lower-cased, with the default port and no trailing slash."""
    parts = urlsplit(str(url).strip())
    scheme = (parts.scheme or "http").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/')}"


def is_connected(client, project_id: int, backend_url: str) -> bool:
    """True when one of the project's ML backends has ``backend_url``; an unknown project is False."""
    from label_studio_sdk.core.api_error import ApiError

    try:
        backends = client.ml.list(project=project_id)
    except ApiError as exc:
        if exc.status_code in (400, 403, 404):
            return False
        raise
    wanted = normalise_url(backend_url)
    return any(normalise_url(as_dict(b).get("url") or "") == wanted for b in backends)


def secure_webhook(client, project_id: int, backend_url: str, headers: dict) -> tuple[int, int]:
    """Set ``headers`` on the project's webhooks that point at ``<backend_url>/webhook``;
    returns ``(found, changed)`` (webhooks that already carry them are left alone)."""
    target = normalise_url(backend_url.rstrip("/") + "/webhook")
    found = changed = 0
    for webhook in client.webhooks.list(project=str(project_id)):
        hook = as_dict(webhook)
        if normalise_url(hook.get("url") or "") != target:
            continue
        found += 1
        current = hook.get("headers") or {}
        if all(current.get(k) == v for k, v in headers.items()):
            continue
        client.webhooks.update(id=hook["id"], url=hook["url"], headers={**current, **headers})
        changed += 1
    return found, changed
