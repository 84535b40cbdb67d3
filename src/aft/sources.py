"""Source files: a local copy named in the config, or a hub dataset file at a pinned revision."""

from __future__ import annotations

import json
from pathlib import Path

from aft.config import SourceFile


def fetch(src: SourceFile) -> Path:
    """The path of a source file, downloading it (into the HF cache) when no local copy is named."""
    if src.local_path is not None:
        path = Path(src.local_path)
        if not path.is_file():
            raise FileNotFoundError(f"local_path {src.local_path!r} does not exist or is not a file")
        return path
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(src.repo_id, src.filename, revision=src.revision, repo_type="dataset"))


def read_records(path: Path) -> list[dict]:
    """Rows of a .jsonl, .json (a list) or .parquet file."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pandas as pd

        return json.loads(pd.read_parquet(path).to_json(orient="records"))
    if path.suffix == ".json":
        rows = json.loads(path.read_text())
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
        return rows
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]
