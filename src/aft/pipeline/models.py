"""Models from the hub, fetched once: the rule fetch_model downloads a repository at a revision through the
Hugging Face cache and writes the files a model needs into one folder; every other job loads that folder
with the hub switched off (`hub_offline`), so no compute node touches the network and a job can never
load other weights than the ones the DAG fetched.

The cache (HF_HUB_CACHE / HF_HOME; on a cluster a folder on the shared filesystem) makes a killed
download resume, and the folder is filled with hard links to its blobs where both are on one filesystem,
so the weights take their space once. With HF_HUB_OFFLINE=1 the fetch reads a cache filled beforehand
(an air-gapped site).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import shutil
import time
from pathlib import Path, PurePosixPath

from aft.pipeline.config import COMMIT, HubModel

log = logging.getLogger("aft")

# weight formats no job here reads; a repository often ships them beside its safetensors
# (Meta's original/ consolidated checkpoints, TensorFlow/Flax/ONNX/GGUF exports)
FOREIGN_WEIGHTS = (
    "original/*",
    "*.pth",
    "*.h5",
    "*.msgpack",
    "*.onnx",
    "*.ot",
    "*.gguf",
    "*.tflite",
    "*.mlmodel",
    "onnx/*",
    "openvino/*",
)
TORCH_BIN = ("*.bin", "*.pt")


def model_files(paths: list[str]) -> list[str]:
    """The files of a repository a model folder needs, in the given order: everything but foreign weight
    formats, and the PyTorch .bin/.pt weights only where the repository has no safetensors ones."""
    has_safetensors = any(PurePosixPath(p).suffix == ".safetensors" for p in paths)
    skipped = FOREIGN_WEIGHTS + (TORCH_BIN if has_safetensors else ())
    return [p for p in paths if not any(fnmatch.fnmatch(p, pattern) for pattern in skipped)]


def hub_offline() -> None:
    """Switch the Hugging Face hub off for this process and its children (a job that loads models from
    the folders fetch_model wrote): a missing file is an error here, never a download on a compute node."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import huggingface_hub.constants

    # read once at import time; transformers and vLLM ask huggingface_hub's is_offline_mode()
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def model_folder_problem(path: str | Path) -> str | None:
    """Why `path` cannot be loaded as a model folder, or None."""
    folder = Path(path)
    if not folder.is_dir():
        return (
            f"{path} is not a folder: jobs load models from folders (the rule fetch_model writes them for"
            " hub ids), never from the network"
        )
    if not (folder / "config.json").is_file():
        return f"{path} has no config.json, so it is not a Hugging Face model folder"
    return None


def _link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link a cached blob (same filesystem: no second copy) or copy it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    real = src.resolve()
    try:
        os.link(real, dest)
    except OSError:
        shutil.copy2(real, dest)


def fetch(model: HubModel, out: Path, cache_dir: str | None = None) -> dict:
    """Download `model` (or read it from the cache when the hub is offline) and write its model files into
    `out` atomically. Returns its provenance: the commit, the files and their bytes."""
    from huggingface_hub import HfApi, constants, snapshot_download

    started = time.time()
    allow, revision = None, model.revision
    if not constants.HF_HUB_OFFLINE:
        # list the files first so that unused weight formats (often as large as the model) are never
        # fetched; then fetch at the commit listed, so a branch moving meanwhile cannot mix two commits
        info = HfApi().model_info(model.repo, revision=model.revision)
        siblings = [s.rfilename for s in info.siblings or []]
        allow, revision = model_files(siblings), info.sha
        log.info("%s@%s: %d of %d files to fetch", model.repo, revision, len(allow), len(siblings))
    snapshot = Path(
        snapshot_download(model.repo, revision=revision, allow_patterns=allow, cache_dir=cache_dir)
    )
    commit = snapshot.name  # the cache's snapshots/<commit> folder
    if not re.match(COMMIT, commit):
        raise RuntimeError(f"{model.repo}: the cache returned {snapshot}, not a snapshots/<commit> folder")
    if model.pinned and commit != model.revision:
        raise RuntimeError(f"{model.repo}: asked for commit {model.revision}, the cache gave {commit}")
    files = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())
    files = model_files(files)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in files:
        _link_or_copy(snapshot / rel, tmp / rel)
    problem = model_folder_problem(tmp)
    if problem:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"{model.repo}@{commit}: {problem.replace(str(tmp), 'the fetched folder')}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    size = sum((out / rel).stat().st_size for rel in files)
    log.info("%s@%s: %d files, %.2f GB in %s", model.repo, commit, len(files), size / 1e9, out)
    return {
        "commit": commit,
        "files": files,
        "bytes": size,
        "seconds": round(time.time() - started, 1),
    }
