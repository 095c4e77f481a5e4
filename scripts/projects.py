"""Project-level SDK operations shared by the command-line tools, the demo and the tests."""
from __future__ import annotations

from typing import Iterable, Iterator

from labelloop.label_config import load as load_label_config


def create_project(client, title: str, label_config: str, *, description: str = ""):
    """Create a project from a template name (see `labelloop.label_config.TEMPLATES`) or raw XML."""
    xml = label_config if label_config.lstrip().startswith("<") else load_label_config(label_config)
    return client.projects.create(title=title, label_config=xml, description=description)


def import_tasks(client, project_id: int, data: Iterable[dict], *, chunk_size: int = 5000) -> int:
    """Import task data dicts in chunks; returns how many tasks were created."""
    batch: list[dict] = []
    created = 0
    for item in data:
        batch.append({"data": item})
        if len(batch) >= chunk_size:
            created += client.projects.import_tasks(id=project_id, request=batch).task_count or 0
            batch = []
    if batch:
        created += client.projects.import_tasks(id=project_id, request=batch).task_count or 0
    return created


def connect_backend(client, project_id: int, url: str, *, title: str = "labelloop",
                    basic_auth: tuple[str, str] | None = None):
    """Attach the ML backend at ``url``; Label Studio calls its /health and /setup now.

    Interactive preannotations stay off: they send a smart tool's clicks, which labelloop does
    not read; prelabels on task open come without them (`docs/screenshot_connect.py`)."""
    kwargs = dict(project=project_id, url=url, title=title, is_interactive=False, auto_update=True)
    if basic_auth:
        kwargs.update(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0], basic_auth_pass=basic_auth[1])
    return client.ml.create(**kwargs)


def retrieve_predictions(client, project_id: int) -> None:
    """Ask Label Studio to fetch predictions for every task from its connected backend."""
    client.actions.create(id="retrieve_tasks_predictions", project=project_id,
                          selected_items={"all": True, "excluded": []})


def iter_tasks(client, project_id: int, *, page_size: int = 500) -> Iterator:
    """Every task of the project with its annotations and predictions."""
    yield from client.tasks.list(project=project_id, fields="all", page_size=page_size)
