"""Remembers which projects connected this backend (asked through the SDK, cached).

Anyone who reaches ``/webhook`` can name any project id; acting on it would rewrite that
project's predictions with the backend's API key. So a webhook is acted on only when the
project's ML backends in Label Studio include this backend's URL: ``LABELLOOP_BACKEND_URL``
when set, else the address the request came to (Label Studio posts webhooks to
``<backend URL>/webhook``).
"""
from __future__ import annotations

import base64
import logging
import threading
import time

from .config import Settings

logger = logging.getLogger(__name__)


class ConnectedProjects:
    """``is_connected`` answers from a cache: yes for ``ttl_s``, no for ``negative_ttl_s``."""

    def __init__(self, settings: Settings, *, ttl_s: float = 300.0, negative_ttl_s: float = 10.0):
        self.settings = settings
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self._cache: dict[tuple[int, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()
        self._secured: dict[int, float] = {}  # project -> when to check its webhook again

    def backend_url(self, request_url: str) -> str:
        return self.settings.backend_url or request_url

    def _client(self):
        from labelloop.scripts.client import connect

        # short: a webhook holds a server thread while Label Studio answers
        return connect(self.settings.label_studio_url, self.settings.label_studio_api_key, check=False, timeout=5.0)

    def is_connected(self, project_id: int, request_url: str) -> bool | None:
        """True or False, or None when Label Studio cannot be asked (no key, unreachable)."""
        url = self.backend_url(request_url)
        key = (project_id, url)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        from labelloop.scripts.client import error_text
        from labelloop.scripts.connections import is_connected

        try:
            answer = is_connected(self._client(), project_id, url)
        except Exception as exc:  # the SDK raises ApiError, httpx and pydantic errors
            logger.error("cannot ask Label Studio whether project %s connected %s: %s", project_id, url,
                         error_text(exc))
            return None
        with self._lock:
            self._cache[key] = (now + (self.ttl_s if answer else self.negative_ttl_s), answer)
            if len(self._cache) > 10_000:  # bound memory against floods of made-up ids
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        return answer

    def webhook_headers(self) -> dict | None:
        """The header Label Studio's webhook must send: the backend's own Basic auth."""
        if not self.settings.basic_auth_user:
            return None
        raw = f"{self.settings.basic_auth_user}:{self.settings.basic_auth_pass}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def secure_webhook_later(self, project_id: int, request_url: str, *, attempts: int = 6,
                             delay_s: float = 2.0) -> None:
        """In the background, give the project's webhook to this backend the Basic auth header.

        Label Studio creates that webhook right after the first /setup succeeds, hence the retries.
        """
        headers = self.webhook_headers()
        if headers is None or not self.settings.label_studio_api_key:
            return
        url = self.backend_url(request_url)
        now = time.monotonic()
        with self._lock:
            if self._secured.get(project_id, 0.0) > now:
                return  # /setup comes before every prediction batch: check once in a while only
            self._secured[project_id] = now + self.ttl_s

        def run():
            from labelloop.scripts.client import error_text
            from labelloop.scripts.connections import secure_webhook

            for _ in range(attempts):
                try:
                    found, changed = secure_webhook(self._client(), project_id, url, headers)
                    if found:
                        if changed:
                            logger.info("project %s: the webhook to %s now carries the backend's credentials",
                                        project_id, url)
                        return
                except Exception as exc:
                    logger.warning("project %s: cannot set the webhook's credentials yet: %s", project_id,
                                   error_text(exc))
                time.sleep(delay_s)
            logger.warning("project %s: no webhook to %s/webhook found; annotation events will get 401 until "
                           "one exists and the next /setup secures it", project_id, url)
            with self._lock:
                self._secured.pop(project_id, None)  # so that the next /setup tries again

        threading.Thread(target=run, name=f"labelloop-webhook-{project_id}", daemon=True).start()

