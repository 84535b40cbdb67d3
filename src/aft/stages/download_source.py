"""Stage `download_source`: one file of a configured source, fetched, checked against its sha256 and
written atomically (a local rule: clusters often have no internet on compute nodes).

--config carries what the file is (repository, revision, path, checksum); --local and --mirror where
to read it instead of the network (a copy of the file as written here, or a mirror's copy of the
upstream file; both empty = download). The two are kept apart so that moving a source to a mirror
reruns nothing.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.download_source --config CFG --source NAME --file NAME [--local PATH] \
        [--mirror PATH] --out FILE --metrics FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.pipeline.config import Source
from aft.pipeline.sources import materialise
from aft.pipeline.stage import Outcome, run_stage


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="the source's name in the config's sources section")
    p.add_argument("--file", required=True, help="the file's name within the source")
    p.add_argument("--local", default="", help="a copy of the file as written here ('' = none)")
    p.add_argument("--mirror", default="", help="a mirror's copy of the upstream file ('' = none)")
    p.add_argument("--out", type=Path, required=True)


def run(src: Source, name: str, file: str, local: str, mirror: str, out: Path) -> tuple[dict, dict[str, str]]:
    """Fetch (or copy) and check one file; returns (metrics, record: origin, sha256, resolved revision)."""
    matches = [f for f in src.files if f.name == file]
    if not matches:
        raise SystemExit(f"source {name!r} has no file {file!r}; it has {[f.name for f in src.files]}")
    record = materialise(
        name, src, matches[0], out, Path(local) if local else None, Path(mirror) if mirror else None
    )
    metrics = {
        "bytes": record["bytes"],
        "sha256_pinned": int(record["sha256_pinned"]),
        "revision_pinned": int(record["revision_pinned"]),
    }
    facts = {k: record[k] for k in ("origin", "sha256", "resolved_revision")}
    return metrics, {"source": name} | facts


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        metrics, record = run(cfg["source"], a.source, a.file, a.local, a.mirror, a.out)
        return Outcome(metrics, record=record)

    run_stage("download_source", __doc__, argv, arguments, {"source": Source}, body, network=True)


if __name__ == "__main__":
    main()
