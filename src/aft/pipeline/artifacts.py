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

KEY_LENGTH = 10  # hex digits: 40 bits, no collision among the few thousand jobs of a project
KEY_PATTERN = rf"[0-9a-f]{{{KEY_LENGTH}}}"


def artifact_key(rule: str, wildcards: Mapping[str, str], settings: str, parents: Iterable[str]) -> str:
    """The key of a job's outputs: equal exactly when the rule, its wildcards, its settings (the JSON
    of the config sections it reads) and the keys or identities of what it reads are equal."""
    job = {"rule": rule, "wildcards": dict(sorted(wildcards.items())), "settings": settings}
    text = json.dumps({**job, "parents": list(parents)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file in a folder (by path relative to it; Snakemake's
    .snakemake_timestamp marker left out, it is empty by design)."""
    if path.is_file():
        return {path.name: file_sha256(path)}
    return {
        str(f.relative_to(path)): file_sha256(f)
        for f in sorted(path.rglob("*"))
        if f.is_file() and f.name != ".snakemake_timestamp"
    }
