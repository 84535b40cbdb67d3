"""What an artifact is, before and after it is made.

Before: its key, a hash of the job that makes it (rule, wildcards, the config sections the rule reads,
the keys of the artifacts it reads, and the identity of the text files it reads). Every result path holds
its key, so two experiments whose jobs are the same write the same path and the artifact is made once;
going back to an earlier config finds its artifacts where they were (docs/experiments.md).

After: its fingerprint, the sha256 of each file it is made of, recorded by the stage that wrote it, so
two runs of one job (two machines, two commits) can be compared file by file (aft.tools.compare).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from aft.pipeline.io import file_digests, sha256_file

KEY_LENGTH = 10  # hex digits: 40 bits, no collision among the few thousand jobs of a project
KEY_PATTERN = rf"[0-9a-f]{{{KEY_LENGTH}}}"


def artifact_key(rule: str, wildcards: Mapping[str, str], settings: str, parents: Iterable[str]) -> str:
    """The key of a job's outputs: equal exactly when the rule, its wildcards, its settings (the JSON
    of the config sections it reads) and the keys or identities of what it reads are equal."""
    job = {"rule": rule, "wildcards": dict(sorted(wildcards.items())), "settings": settings}
    text = json.dumps({**job, "parents": list(parents)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def fingerprint(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file in a folder (aft.pipeline.io.file_digests)."""
    return {path.name: sha256_file(path)} if path.is_file() else file_digests(path)


def job_record(metrics_file: Path, data: dict) -> dict:
    """A finished job as its metrics.json tells it: stage, wildcards (without the key), key (the
    folder's name; None for a download, which is not keyed), the fingerprints of its outputs (a
    download: its recorded checksum), its numeric metrics and the config hash of each section it read."""
    outputs = data.get("outputs") or {}
    if not outputs and "sha256" in (data.get("record") or {}):
        outputs = {str(metrics_file).removesuffix(".metrics.json"): {"file": data["record"]["sha256"]}}
    return {
        "stage": data["stage"],
        "wildcards": {k: v for k, v in (data.get("wildcards") or {}).items() if k != "key"},
        "key": None if data["stage"] == "download_source" else metrics_file.parent.name,
        "metrics_file": str(metrics_file),
        "outputs": outputs,
        "metrics": {k: v for k, v in data.get("metrics", {}).items() if isinstance(v, int | float)},
        "config_hashes": {
            k.removeprefix("config_hash."): v
            for k, v in (data.get("provenance") or {}).items()
            if k.startswith("config_hash.")
        },
    }
