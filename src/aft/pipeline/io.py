"""Small file helpers: atomic writes, so a killed job never leaves a half-written output behind, and
JSON-lines reading that names the file and line of a bad record. Text is UTF-8 whatever the locale."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once, at import (os.umask can only be read by setting it, which is not thread-safe later)
UMASK = _process_umask()


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # mkstemp makes 0600; a shared results folder needs the mode the user's umask asks for
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> object:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


class BadRecord(ValueError):
    """A line of a JSON-lines file that is not a UTF-8 JSON object; says which file and line."""


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (blank lines skipped); BadRecord names the file and line of a
    line that is not UTF-8, not JSON (a truncated write, say) or not an object."""
    rows = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BadRecord(f"{path}:{n}: not UTF-8 (byte {err.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise BadRecord(f"{path}:{n}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise BadRecord(f"{path}:{n}: a record must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digests(path: Path) -> dict[str, str]:
    """sha256 of every file in a folder, by path relative to it, in sorted order (Snakemake's empty
    .snakemake_timestamp marker left out: it appears after the job, so it is not the job's content)."""
    return {
        str(f.relative_to(path)): sha256_file(f)
        for f in sorted(Path(path).rglob("*"))
        if f.is_file() and f.name != ".snakemake_timestamp"
    }


def sha256_dir(path: Path, files: dict[str, str] | None = None) -> str:
    """A checksum of a folder: relative names and contents, in sorted order. `files` (its file_digests,
    as metrics.json records them) saves reading the folder again."""
    files = file_digests(path) if files is None else files
    h = hashlib.sha256()
    for name, digest in files.items():
        h.update(name.encode())
        h.update(digest.encode())
    return h.hexdigest()


def text_file_problem(key: str, path: str, must_contain: str | None = None) -> str | None:
    """Why the text file `path` (config key `key`) cannot be used, or None: missing, not UTF-8, empty,
    or without its marker. Prompts and templates are read byte for byte, so this is checked up front."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return f"{key} = {path!r}: cannot be read ({err.strerror})"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"{key} = {path!r}: not UTF-8 (byte {err.start}: {data[err.start : err.start + 1]!r})"
    if not text.strip():
        return f"{key} = {path!r}: the file is empty"
    if must_contain and must_contain not in text:
        return f"{key} = {path!r}: the file must contain the marker {must_contain}"
    return None
