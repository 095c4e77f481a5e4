"""`labelloop gazetteer`: add a file of entity strings to an NER project's gazetteer.

The entries go to ``<model dir>/<project key>/gazetteers/<label>.txt``, where the backend reads
them (written atomically; the backend's model version changes with them, so Label Studio asks
for fresh prelabels). Entries already there are kept unless ``replace``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labelloop.kinds import parse as parse_config
from labelloop.label_config.spec import SpanSpec
from labelloop.model.errors import LabelloopError
from labelloop.model.spans.gazetteer import label_file, read_entries
from labelloop.model.store import ModelStore, atomic_write_text, project_key


@dataclass
class GazetteerReport:
    path: Path
    label: str
    read: str       # what the file held, e.g. "120 entries (2 blank lines skipped)"
    added: int
    total: int


def add_gazetteer(client, project_id: int, label: str, source: Path, *, model_dir: Path,
                  replace: bool = False) -> GazetteerReport:
    """Merge ``source``'s entries into the project's gazetteer for ``label``.

    Raises `LabelloopError` for a project that is not NER, a label the config lacks, or a file
    that cannot be read (missing, not UTF-8)."""
    project = client.projects.get(id=project_id)
    spec, _ = parse_config(project.label_config)
    if not isinstance(spec, SpanSpec):
        raise LabelloopError(f"project {project_id} is not an NER project (no <Labels> over a <Text>)")
    if label not in spec.labels:
        raise LabelloopError(f"project {project_id} has no label {label!r}; its labels: {', '.join(spec.labels)}")
    new = read_entries(source)
    if not new.entries:
        raise LabelloopError(f"{source} holds no entries ({new.summary()})")
    target = label_file(ModelStore(model_dir).project_dir(project_key(project_id, project.created_at)) / "gazetteers",
                        label)
    existing = [] if replace or not target.exists() else read_entries(target).entries
    merged = list(dict.fromkeys(existing + new.entries))
    atomic_write_text(target, "\n".join(merged) + "\n")
    return GazetteerReport(target, label, new.summary(), len(merged) - len(existing), len(merged))
